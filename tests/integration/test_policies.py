"""A convergence policy chosen per move, on real QEMU: post-copy when pre-copy stalls."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LabEnv, report_of, wait_until
from served import slow_link

from ferry.cli.client import FerryClient
from ferry.job import JobState
from ferry.reports import LiveReport

pytestmark = pytest.mark.lab
__all__ = ["slow_link"]  # the fixture, imported for this module's test


def where_it_runs(lab: LabEnv, vm: str) -> dict[str, str]:
    return {host: state for host in lab.hosts
            if (state := lab.domains(host).get(vm)) is not None}


def test_a_move_asked_with_the_postcopy_policy_switches_to_post_copy_and_lands(
        lab: LabEnv, make_vm: Callable[..., None],
        slow_link: Callable[[str | None], None]) -> None:
    # 256 MiB rewritten, unthrottled, over a link slower than the writes: pre-copy cannot
    # catch up, so the policy's steps end in post-copy.
    make_vm("pol1", "--host", "host1", "--datastore", "shared", "--memory", "512",
            "--disk", "0", "--workload", "heartbeat,mem:256")
    assert lab.collector.wait_for_heartbeat("pol1", 60)

    unknown = lab.ferry("migrate", "pol1", "--host", "host2", "--policy", "fastest")
    assert unknown.code == 2 and "'fastest'" in unknown.err and "postcopy" in unknown.err
    assert where_it_runs(lab, "pol1") == {"host1": "running"}

    slow_link("300mbit")
    moved = lab.ferry("migrate", "pol1", "--host", "host2", "--policy", "postcopy")
    assert moved.code == 0, moved.err
    report = report_of(FerryClient().list_jobs(limit=1)[0], LiveReport)
    assert report.policy == "postcopy"
    assert any("switched to post-copy" in action for action in report.policy_actions), \
        report.policy_actions
    assert where_it_runs(lab, "pol1") == {"host2": "running"}
    assert lab.collector.wait_for_heartbeat("pol1", 30)


def test_a_hosts_bandwidth_limit_is_what_libvirt_copies_at(
        lab: LabEnv, make_vm: Callable[..., None]) -> None:
    make_vm("bw1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat")
    assert lab.collector.wait_for_heartbeat("bw1", 60)
    limit = 8  # MiB/s: the guest's written pages take seconds, not a fraction of one
    assert lab.ferry("host", "set", "host2", "--migration-bandwidth", str(limit)).code == 0
    try:
        # A policy that may switch to post-copy: the limit must hold in that phase too.
        started = lab.ferry("migrate", "bw1", "--host", "host2", "--policy", "postcopy",
                            "--no-wait")
        assert started.code == 0, started.err
        job_id = started.out.split()[2].rstrip(":")
        # Asked of the source's QEMU (through libvirt) while the copy runs: the rate
        # the migration was handed, in bytes/s.
        def qemu(command: str) -> dict[str, Any]:
            said = lab.virsh("host1", "qemu-monitor-command", "bw1",
                             json.dumps({"execute": command}), check=False)
            return json.loads(said.stdout)["return"] if said.returncode == 0 else {}

        wait_until(lambda: qemu("query-migrate").get("status") == "active", 60,
                   "the copy under way")
        handed = qemu("query-migrate-parameters")
        assert handed["max-bandwidth"] == limit * 2**20
        assert handed["max-postcopy-bandwidth"] == limit * 2**20
        client = FerryClient()
        wait_until(lambda: client.get_job(job_id).finished_at, 180, "the move's end")
        job = client.get_job(job_id)
        assert job.state is JobState.SUCCEEDED, job.error
        assert any(f"limited to {limit} MiB/s (host host2's limit)" in e.message
                   for e in job.events)
        report = report_of(job, LiveReport)
        assert report.data_bytes and report.total_ms
        rate_mibps = report.data_bytes / 2**20 / (report.total_ms / 1000)
        assert rate_mibps <= limit * 1.1, rate_mibps
    finally:
        lab.ferry("host", "set", "host2", "--migration-bandwidth", "none")
    assert where_it_runs(lab, "bw1") == {"host2": "running"}
    assert lab.collector.wait_for_heartbeat("bw1", 30)

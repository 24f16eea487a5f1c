"""Post-copy on real QEMU when the migration link fails, and cancels in each phase.

A busy guest (256 MiB rewritten) moves over a link slower than its writes, so after
the first pass the policy switches to post-copy: from then the guest runs on host2
and fetches from host1 the pages it has not received yet. The link cut is host2's
cable unplugged (``ferry lab link host2 down``): silent, as a real one is, so only
libvirt's keepalives notice it, after about 30 s.

The lab's guests run with TCG, where ferry's ``auto`` policy does not use post-copy
(a link failure could not be recovered from: see ``engine/policy.TCG_POSTCOPY``), so
these moves name the ``postcopy`` policy, which takes that risk and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, report_of, wait_until
from served import ServeFactory, serve_ferry, slow_link, where_it_runs

from ferry.api.schemas import JobOut
from ferry.cli.client import ApiError, FerryClient
from ferry.lab.lab import cut_link, restore_link
from ferry.reports import LiveReport

pytestmark = pytest.mark.lab
__all__ = ["serve_ferry", "slow_link"]  # the fixtures, imported for this module's tests

FINISHED = ("succeeded", "failed", "cancelled")
WAIT_S = 20  # the short-wait server's FERRY_POSTCOPY_RECOVERY_S
KEEPALIVE_S = 40  # libvirt's keepalives to the destination give up (5 s x 5, and then some)
ATTEMPT_S = 40  # one resume asked while the link is down, until it gives up


def busy_guest(lab: LabEnv, make_vm: Callable[..., None], name: str) -> None:
    make_vm(name, "--host", "host1", "--datastore", "shared", "--memory", "512",
            "--disk", "0", "--workload", "heartbeat,mem:256")
    assert lab.collector.wait_for_heartbeat(name, 60)


def source_state(lab: LabEnv, vm: str) -> str:
    return lab.virsh("host1", "domstate", "--reason", vm).stdout.strip()


def wait_job(client: FerryClient, job_id: str, timeout: float) -> JobOut:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job.state in FINISHED:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout:g} s: {client.get_job(job_id)}")


def memory_is_whole(lab: LabEnv, vm: str) -> None:
    address = FerryClient().get_vm(vm).lab_address
    assert address
    check = lab.collector.request_memory_check(vm, address, timeout=90)
    assert check.ok and check.valid == check.pages == 256 * 2**20 // 4096, check


def start_postcopy_move(lab: LabEnv, vm: str, client: FerryClient | None = None
                        ) -> tuple[FerryClient, str]:
    """The move, once libvirt on host1 shows the VM paused there because it runs on host2."""
    client = client or FerryClient()
    job = client.migrate(vm, "host2", policy="postcopy")
    wait_until(lambda: source_state(lab, vm) == "paused (post-copy)"
               or client.get_job(job.id).state in FINISHED, 300, f"{vm} in post-copy")
    assert source_state(lab, vm) == "paused (post-copy)", client.get_job(job.id)
    return client, job.id


def test_a_short_link_cut_during_postcopy_stalls_the_move_and_it_lands_whole(
        lab: LabEnv, make_vm: Callable[..., None],
        slow_link: Callable[[str | None], None]) -> None:
    busy_guest(lab, make_vm, "pcr1")
    slow_link("200mbit")
    client, job_id = start_postcopy_move(lab, "pcr1")

    cut_link("host2")
    try:
        time.sleep(10)
    finally:
        restore_link("host2")
    job = wait_job(client, job_id, 300)

    assert job.state == "succeeded", (job.error, [e.message for e in job.events])
    assert where_it_runs(lab, "pcr1") == {"host2": "running"}
    assert lab.collector.wait_for_heartbeat("pcr1", 30)
    memory_is_whole(lab, "pcr1")
    report = report_of(job, LiveReport)
    # The decision, with the figures it was taken on, and the risk it took, said.
    assert any(a.startswith("switched to post-copy (pre-copy") and "MiB/s" in a
               for a in report.policy_actions), report.policy_actions
    assert any(a.startswith("post-copy at risk: the VM runs with TCG")
               for a in report.policy_actions), report.policy_actions


def test_a_link_that_never_returns_fails_the_move_in_time_and_destroys_nothing(
        lab: LabEnv, make_vm: Callable[..., None], slow_link: Callable[[str | None], None],
        serve_ferry: ServeFactory, tmp_path: Path) -> None:
    busy_guest(lab, make_vm, "pcr2")
    served = serve_ferry("short-wait", f"sqlite:///{tmp_path / 'short.db'}",
                         {"FERRY_POSTCOPY_RECOVERY_S": str(WAIT_S)})
    slow_link("200mbit")
    client, job_id = start_postcopy_move(lab, "pcr2", served.client)

    cut_link("host2")
    try:
        cut_at = time.monotonic()
        job = wait_job(client, job_id, KEEPALIVE_S + WAIT_S + 2 * ATTEMPT_S)
        ended_s = time.monotonic() - cut_at
        # Asked of host1's libvirt: the VM is paused there, not destroyed nor resumed.
        on_source = source_state(lab, "pcr2")
    finally:
        restore_link("host2")
    try:
        assert job.state == "failed" and job.error is not None, job
        assert ended_s < KEEPALIVE_S + WAIT_S + ATTEMPT_S, ended_s
        messages = [e.message for e in job.events]
        assert any(m.startswith("post-copy interrupted") for m in messages), messages
        assert f"could not be resumed in the {WAIT_S} s allowed" in job.error, job.error
        assert "paused on both hosts" in job.error and "still only on host1" in job.error
        assert "--postcopy-resume" in job.error and "TCG" in job.error
        assert on_source == "paused (post-copy failed)"
        # Back on the network, host2 still holds its part of the VM: nothing removed it.
        wait_until(lambda: lab.virsh("host2", "domstate", "pcr2", check=False).returncode
                   == 0, 60, "host2 answering about pcr2")
    finally:
        for host in ("host2", "host1"):  # a TCG guest stranded so is lost: clear it away
            lab.virsh(host, "destroy", "pcr2", check=False)
            lab.virsh(host, "undefine", "pcr2", check=False)
        lab.ferry("refresh")


def test_a_cancel_during_postcopy_is_refused_and_the_move_completes(
        lab: LabEnv, make_vm: Callable[..., None],
        slow_link: Callable[[str | None], None]) -> None:
    busy_guest(lab, make_vm, "pcr3")
    slow_link("200mbit")
    client, job_id = start_postcopy_move(lab, "pcr3")

    with pytest.raises(ApiError) as refused:
        client.cancel_job(job_id)

    assert refused.value.http_status == 409 and "too late" in refused.value.message, \
        refused.value.message
    job = wait_job(client, job_id, 300)
    assert job.state == "succeeded" and job.error is None, job.error
    assert where_it_runs(lab, "pcr3") == {"host2": "running"}
    memory_is_whole(lab, "pcr3")


def test_auto_on_a_tcg_guest_throttles_says_why_and_a_cancel_keeps_it_on_its_source(
        lab: LabEnv, make_vm: Callable[..., None],
        slow_link: Callable[[str | None], None]) -> None:
    busy_guest(lab, make_vm, "pcr4")
    slow_link("200mbit")
    client = FerryClient()
    job = client.migrate("pcr4", "host2", policy="auto")
    wait_until(lambda: any(e.message.startswith("pre-copy iteration 2")
                           for e in client.get_job(job.id).events), 120, "the second pass")

    client.cancel_job(job.id)

    done = wait_job(client, job.id, 120)
    assert done.state == "cancelled", done.error
    assert any("post-copy is not used for this move (the VM runs with TCG" in e.message
               for e in done.events), [e.message for e in done.events]
    assert where_it_runs(lab, "pcr4") == {"host1": "running"}
    assert lab.collector.wait_for_heartbeat("pcr4", 30)
    memory_is_whole(lab, "pcr4")

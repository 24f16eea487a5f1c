"""A convergence policy chosen per move, on real QEMU: post-copy when pre-copy stalls."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import LabEnv, report_of
from served import slow_link

from ferry.cli.client import FerryClient
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

"""Per-host migration limits in the lab: a third migration on a host waits, then runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import LabEnv, wait_until

from ferry.cli.client import FerryClient
from ferry.lab.lab import set_link

pytestmark = pytest.mark.lab

FINISHED = ("succeeded", "failed", "cancelled")


def test_third_migration_on_a_host_waits_for_a_slot_then_runs(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    vms = ["q1", "q2", "q3", "q4"]
    for vm in vms:
        make_vm(vm, "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat")
    for vm in vms:
        assert lab.collector.wait_for_heartbeat(vm, 90)
    client = FerryClient()
    set_link("host1", "100mbit")  # each copy takes seconds, so they overlap
    try:
        jobs = [client.migrate(vm, "host2").id for vm in vms[:3]]
        third = client.get_job(jobs[2])
        assert third.state == "queued", [(j.vm, j.state, j.error, [e.message for e in j.events])
                                         for j in map(client.get_job, jobs)]
        assert any("waiting for a migration slot" in e.message for e in third.events)
        # A queued move can be cancelled: it never touches a host.
        fourth = client.migrate("q4", "host3").id
        assert client.get_job(fourth).state == "queued"
        assert lab.ferry("job", "cancel", fourth).code == 0
        assert client.get_job(fourth).state == "cancelled"
        try:
            wait_until(lambda: all(client.get_job(j).state in FINISHED for j in jobs), 180,
                       "the three migrations")
        except AssertionError:
            for j in jobs:
                job = client.get_job(j)
                print(job.vm, job.state, job.error, job.progress,
                      [e.message for e in job.events][-3:])
            raise
    finally:
        set_link("host1", None)
    done = [client.get_job(j) for j in jobs]
    assert [j.state for j in done] == ["succeeded"] * 3, [j.error for j in done]
    for vm in vms[:3]:
        assert lab.domains("host2").get(vm) == "running" and vm not in lab.domains("host1")
    assert lab.domains("host1").get("q4") == "running"
    # Never more than two at once on host1: the third started only after one ended.
    first_end = min(j.finished_at or 0 for j in done[:2])
    assert done[2].started_at is not None and done[2].started_at >= first_end
    assert all(j.started_at is not None for j in done)
    spans = [(j.started_at or 0, j.finished_at or 0) for j in done]
    for moment, _ in spans:
        assert sum(1 for s, e in spans if s <= moment < e) <= 2

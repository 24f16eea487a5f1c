"""Maintenance mode in the lab: a host is emptied by live migration within the slot limits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from conftest import LabEnv, progress_of, report_of, wait_until

from ferry.cli.client import FerryClient
from ferry.reports import EvacuatedVM, EvacuationProgress, EvacuationReport

pytestmark = pytest.mark.lab

FINISHED = ("succeeded", "failed", "cancelled")


def test_entering_maintenance_moves_every_vm_that_can_move_and_names_the_one_that_cannot(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    running = ["ev1", "ev2", "ev3", "ev4"]
    for vm in running:
        make_vm(vm, "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat")
    make_vm("evoff", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--workload", "none", "--no-start")
    # Its disk is on host1's own datastore: no other host can run it.
    make_vm("evlocal", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "16", "--workload", "none")
    for vm in running:
        assert lab.collector.wait_for_heartbeat(vm, 90)
    before = {vm: lab.collector.last_seq(vm) or 0 for vm in running}
    client = FerryClient()
    try:
        result = lab.ferry("host", "maintenance", "enter", "host1", "--json")

        assert result.code == 6, result.err  # one VM could not move
        job = json.loads(result.out)
        report = job["report"]
        assert set(report["moved"]) == {*running, "evoff"}
        assert set(report["not_moved"]) == {"evlocal"}
        assert "storage.not-shared" in report["not_moved"]["evlocal"]
        domains = {h: lab.domains(h) for h in ("host1", "host2", "host3")}
        for vm in running:
            dest = report["moved"][vm]
            assert dest in ("host2", "host3") and domains[dest].get(vm) == "running"
            assert vm not in domains["host1"]
        assert domains[report["moved"]["evoff"]].get("evoff") == "shut off"
        assert domains["host1"].get("evlocal") == "running"
        # Both other hosts took VMs: placement spreads by free memory.
        assert {report["moved"][vm] for vm in running} == {"host2", "host3"}
        # The heartbeats kept coming after the moves.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
                (lab.collector.last_seq(vm) or 0) > before[vm] + 100 for vm in running):
            time.sleep(0.5)
        assert all((lab.collector.last_seq(vm) or 0) > before[vm] + 100 for vm in running)
        # Never more than two moves at once on any host, by the jobs' own timestamps.
        moves = [client.get_job(j) for j in report["jobs"].values()]
        assert all(m.state == "succeeded" for m in moves)
        for host in ("host1", "host2", "host3"):
            spans = [(m.started_at or 0, m.finished_at or 0) for m in moves
                     if host in (m.source_host, m.dest_host)]
            for moment, _ in spans:
                assert sum(1 for s, e in spans if s <= moment < e) <= 2, host
        # In maintenance nothing starts on host1.
        refused = lab.ferry("vm", "create", "evnew", "--host", "host1", "--datastore",
                            "shared", "--disk", "0", "--workload", "none")
        assert refused.code == 4 and "maintenance" in refused.err
        check = lab.ferry("check", "ev1", "--host", "host1")
        assert check.code == 4 and "host.maintenance" in check.out
    finally:
        assert lab.ferry("host", "maintenance", "exit", "host1").code == 0
    assert lab.ferry("check", "ev1", "--host", "host1").code == 0


def test_cancelling_an_evacuation_withdraws_its_queued_moves_and_those_vms_stay(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    from ferry.lab.lab import set_link

    vms = ["ec1", "ec2", "ec3", "ec4"]
    for vm in vms:
        make_vm(vm, "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat")
    for vm in vms:
        assert lab.collector.wait_for_heartbeat(vm, 90)
    client = FerryClient()
    set_link("host1", "100mbit")  # each copy takes seconds: two run, two wait for a slot
    try:
        evacuation = client.enter_maintenance("host1").id
        def placed() -> dict[str, EvacuatedVM]:
            return progress_of(client.get_job(evacuation), EvacuationProgress).vms

        wait_until(lambda: len(placed()) == 4, 60, "all four VMs placed")
        queued = [vm for vm, move in placed().items() if move.state == "queued"]
        assert len(queued) == 2, client.get_job(evacuation).progress
        assert lab.ferry("job", "cancel", evacuation).code == 0
        wait_until(lambda: client.get_job(evacuation).state in FINISHED, 180, "the evacuation")
    finally:
        set_link("host1", None)
        lab.ferry("host", "maintenance", "exit", "host1")
    job = client.get_job(evacuation)
    assert job.state == "cancelled", job.error
    report = report_of(job, EvacuationReport)
    assert set(report.not_moved) >= set(queued)
    for vm in queued:
        assert "cancelled before it started" in report.not_moved[vm]
        assert client.get_job(report.jobs[vm]).state == "cancelled"
        assert lab.domains("host1").get(vm) == "running"  # withdrawn: it never left
    for vm, dest in report.moved.items():  # the running moves finished
        assert lab.domains(dest).get(vm) == "running" and vm not in lab.domains("host1")
    assert len(report.moved) == 2
    start = {vm: lab.collector.last_seq(vm) or 0 for vm in vms}
    wait_until(lambda: all((lab.collector.last_seq(vm) or 0) > start[vm] + 20 for vm in vms),
               60, "heartbeats of all four VMs")

"""Host faults during a move, in the lab: what ferry claims is what libvirt shows, and
ferry heals by itself once the host answers again (no 'ferry refresh')."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conftest import LabEnv, progress_of, report_of, wait_until

from ferry.cli.client import FerryClient
from ferry.lab.lab import crash_libvirtd, cut_link, restart_libvirtd, restore_link, set_link
from ferry.reports import HostSighting, LiveProgress, LiveReport

pytestmark = pytest.mark.lab

FINISHED = ("cancelled", "failed", "succeeded")


def _start_move(lab: LabEnv, vm: str) -> str:
    """A move host1 -> host2 that is copying memory (host1's link is shaped by the caller)."""
    result = lab.ferry("migrate", vm, "--host", "host2", "--no-wait", "--json")
    assert result.code == 0, result.err
    job_id = str(json.loads(result.out)["id"])
    client = FerryClient()
    wait_until(lambda: (progress_of(client.get_job(job_id), LiveProgress).memory_processed
                        or 0) > 4 * 2**20, 90, "the memory copy to start")
    return job_id


def _busy_vm(lab: LabEnv, make_vm: Callable[..., None], name: str) -> None:
    make_vm(name, "--host", "host1", "--datastore", "shared", "--memory", "1024",
            "--disk", "0", "--workload", "heartbeat,mem:256")
    assert lab.collector.wait_for_heartbeat(name, 60), f"guest {name} never sent a heartbeat"


def _heartbeat_goes_on(lab: LabEnv, vm: str) -> None:
    seq = lab.collector.last_seq(vm) or 0
    wait_until(lambda: (lab.collector.last_seq(vm) or 0) > seq + 50, 30,
               f"heartbeats from {vm} on host1")


def test_link_cut_during_move_is_stated_then_confirmed_once_back(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    _busy_vm(lab, make_vm, "cut1")
    client = FerryClient()
    set_link("host1", "50mbit")  # 256 MiB of dirty memory keeps the copy going
    try:
        job_id = _start_move(lab, "cut1")
        cut_link("host2")
        try:
            wait_until(lambda: client.get_job(job_id).state in FINISHED, 150,
                       "the move to fail")
            job = client.get_job(job_id)
            # While host2 is cut off, libvirt on host1 shows the VM running there ...
            assert lab.domains("host1").get("cut1") == "running"
        finally:
            restore_link("host2")
    finally:
        set_link("host1", None)
    # ... and the report says that, and that host2 was not seen, instead of a guess.
    assert job.state == "failed", job.error
    report = report_of(job, LiveReport)
    rollback = report.rollback or ""
    assert "cut1 is running on host1" in rollback, rollback
    assert "host2 did not answer" in rollback and "not confirmed" in rollback, rollback
    assert "remains on host2" not in rollback, rollback
    assert report.unconfirmed == ("host2",)
    assert report.confirmed is None
    assert (report.data_bytes or 0) > 4 * 2**20
    assert (report.data_bytes_basis or "").startswith("at least")
    print(f"rollback: {rollback}")

    # Link back: ferry reconnects by itself and confirms what host2 holds.
    wait_until(lambda: report_of(client.get_job(job_id), LiveReport).confirmed, 120,
               "the confirmation of what remains on host2")
    job = client.get_job(job_id)
    confirmed = [e.message for e in job.events if e.message.startswith("confirmed at")]
    assert len(confirmed) == 1, confirmed
    print(f"{confirmed[0]} ({max(e.at for e in job.events) - job.finished_at:.1f} s after the end)")
    assert "cut1 is running on host1" in confirmed[0], confirmed
    assert ("nothing remains on host2" in confirmed[0]
            or "removed the leftover copy" in confirmed[0]), confirmed
    confirmation = report_of(job, LiveReport).confirmed
    assert confirmation is not None
    assert confirmation.dest == HostSighting(host="host2", answered=True, state=None,
                                             error=None)
    # libvirt agrees: no copy on host2, the VM runs on host1 and its guest goes on.
    assert "cut1" not in lab.domains("host2")
    assert lab.domains("host1").get("cut1") == "running"
    _heartbeat_goes_on(lab, "cut1")
    wait_until(lambda: any(h.name == "host2" and h.connected for h in client.list_hosts()),
               60, "host2 listed as connected again")


def test_source_libvirtd_restart_during_move_heals_by_itself(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    _busy_vm(lab, make_vm, "rst1")
    client = FerryClient()
    set_link("host1", "50mbit")
    try:
        job_id = _start_move(lab, "rst1")
        crash_libvirtd("host1")
        restart_libvirtd("host1")  # as its supervisor would
        wait_until(lambda: client.get_job(job_id).state in FINISHED, 120, "the move to end")
    finally:
        set_link("host1", None)
    # The restarted libvirtd cancelled the move and kept the guest where it was.
    assert lab.domains("host1").get("rst1") == "running"
    assert "rst1" not in lab.domains("host2")
    job = client.get_job(job_id)
    assert job.state == "failed", job.error
    assert (report_of(job, LiveReport).data_bytes or 0) > 4 * 2**20

    # What the job says of the VM is what libvirt shows: said at the rollback if host1
    # answered then, else confirmed once it answered again.
    def truth() -> str | None:
        current = report_of(client.get_job(job_id), LiveReport)
        if not current.unconfirmed:
            return current.rollback
        return current.confirmed.detail if current.confirmed is not None else None

    wait_until(truth, 60, "the job to say where rst1 is")
    said = truth()
    print(f"rollback: {report_of(client.get_job(job_id), LiveReport).rollback}\nthen: {said}")
    assert said is not None
    assert "rst1 is running on host1" in said and "nothing remains on host2" in said, said
    job = client.get_job(job_id)
    assert not [e.message for e in job.events if "NOT running" in e.message], job.events

    # The inventory heals without 'ferry refresh': rst1 is listed again, current, on host1.
    def listed() -> bool:
        vm = next((v for v in client.list_vms() if v.name == "rst1"), None)
        return vm is not None and vm.host == "host1" and vm.current and vm.state == "running"

    wait_until(listed, 60, "'ferry vm list' to show rst1 running on host1 again")
    shown = lab.ferry("vm", "show", "rst1")
    assert shown.code == 0 and "host1" in shown.out, shown.err
    _heartbeat_goes_on(lab, "rst1")

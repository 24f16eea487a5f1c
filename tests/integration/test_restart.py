"""``ferry serve`` killed with SIGKILL mid-move, then started again on the same database.

Each case kills the server (by its pid) at one moment of a move: a queued
move, the pre-copy of a live migration, a Storage VMotion copy, a
shared-nothing copy, a cold copy, an evacuation. After the restart the job's
record must agree with what ``virsh`` shows on every host, the VM must run
exactly once, its heartbeats go on, the disk writer's verifier finds every
acknowledged block, and nothing ferry created for the attempt is left on any host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, disk_source, fill_disk, progress_of, report_of, wait_until
from served import ServedFerry, ServeFactory, serve_ferry, slow_link, where_it_runs

from ferry.api.schemas import JobOut
from ferry.lab.lab import local_datastore_dir
from ferry.lab.layout import LAB_ROOT
from ferry.reports import (
    CopyProgress,
    EvacuationProgress,
    EvacuationReport,
    LiveProgress,
    MoveReport,
)

pytestmark = pytest.mark.lab

__all__ = ["serve_ferry", "slow_link"]  # the fixtures, imported for this module's tests

SHARED = LAB_ROOT / "datastores" / "shared"
DATASTORES = ("shared", "local")
TAKEOVER_S = 10.0 + 2.0 + 8.0  # the lease, one renewal period, and a margin
MIB = 2**20


@pytest.fixture
def served(serve_ferry: ServeFactory, tmp_path: Path) -> ServedFerry:
    """One ``ferry serve`` on a fresh SQLite database of its own."""
    return serve_ferry("ferry", f"sqlite:///{tmp_path / 'ferry.db'}")



# -- what the hosts show -----------------------------------------------------------


def files_of(lab: LabEnv, vm: str) -> dict[str, set[str]]:
    """'host/datastore' -> the volumes named after ``vm`` there, by virsh."""
    files = {}
    for host in lab.hosts:
        for pool in DATASTORES:
            names = {v for v in lab.volumes(host, pool) if v.startswith(f"{vm}-")}
            if names:
                files[f"{host}/{pool}"] = names
    return files


def assert_heartbeats_continue(lab: LabEnv, vm: str) -> None:
    seq = lab.collector.last_seq(vm) or 0
    wait_until(lambda: (lab.collector.last_seq(vm) or 0) > seq + 20, 30,
               f"heartbeats from {vm} after the restart")


def assert_every_acked_block(lab: LabEnv, served: ServedFerry, vm: str, acked: int) -> None:
    wait_until(lambda: lab.collector.disk_acked(vm) > acked + 50, 60,
               f"disk writes from {vm} after the restart")
    address = served.client.get_vm(vm).lab_address
    assert address
    verdict = lab.collector.request_verify(vm, address)
    assert verdict.ok and verdict.corrupt == 0 and verdict.stale == 0, verdict
    assert verdict.max_seq >= acked


def messages(job: JobOut) -> str:
    return "\n".join(f"{e.phase}: {e.message}" for e in job.events)


def assert_taken_over(job: JobOut, killed_owner: str | None, outcome: str) -> None:
    """The restarted server took the job over, judged it on the hosts, and says so."""
    assert killed_owner and job.owner and job.owner != killed_owner, (killed_owner, job.owner)
    assert job.report is not None and not isinstance(job.report, EvacuationReport)
    reconciled = job.report.reconciled
    assert reconciled is not None, job.report
    assert reconciled.outcome == outcome, reconciled
    assert any(e.phase == "reconcile" and "taken over" in e.message for e in job.events), \
        messages(job)
    assert all(r.state in ("removed", "adopted", "kept") for r in job.resources), job.resources


def wait_for(served: ServedFerry, job_id: str, ready: Callable[[JobOut], bool],
             what: str) -> JobOut:
    """Polls the job until ``ready``; fails if it ends first (the kill must come mid-move)."""
    seen: list[JobOut] = []

    def check() -> bool:
        job = served.job(job_id)
        assert job.state not in ("succeeded", "failed", "cancelled"), \
            f"the job ended before the kill: {job.state} {job.error}"
        seen[:] = [job]
        return ready(job)

    wait_until(check, 90, what)
    return seen[0]


def memory_copied_mib(job: JobOut) -> float:
    return (progress_of(job, LiveProgress).memory_processed or 0) / MIB


def disks_copied_mib(job: JobOut) -> float:
    """Shared-nothing: QEMU's disk copy within the migration."""
    return (progress_of(job, LiveProgress).disk_processed or 0) / MIB


def file_copied_mib(job: JobOut) -> float:
    """Storage VMotion's mirror, or a cold move's file copy."""
    vda = progress_of(job, CopyProgress).disks.get("vda")
    return (vda.copied if vda else 0) / MIB


def known(served: ServedFerry) -> None:
    """The served server reads the hosts again: VMs made through the session's server."""
    served.client.refresh()


def kill_and_restart(served: ServedFerry) -> float:
    """SIGKILL the server by its pid and start it again at once, as a supervisor would."""
    served.kill()
    killed = time.time()
    served.restart()
    return killed


# -- the cases --------------------------------------------------------------------
def test_queued_move_starts_by_itself_after_the_restart(
    lab: LabEnv, make_vm: Callable[..., None], served: ServedFerry,
    slow_link: Callable[[str | None], None]
) -> None:
    vms = ["rq1", "rq2"]
    for vm in vms:
        make_vm(vm, "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat,mem:32")
    for vm in vms:
        assert lab.collector.wait_for_heartbeat(vm, 90)
    done = served.ferry("host", "set", "host1", "--max-migrations", "1")
    assert done.returncode == 0, done.stderr
    known(served)
    slow_link("50mbit")
    first = served.client.migrate("rq1", "host2")
    second = served.client.migrate("rq2", "host2")
    running = wait_for(served, first.id, lambda j: memory_copied_mib(j) > 1,
                       "the first move's memory copy")
    assert served.job(second.id).state == "queued"  # host1 has one slot, and it is taken

    killed = kill_and_restart(served)
    slow_link(None)

    one = served.wait_finished(first.id, TAKEOVER_S + 60)
    two = served.wait_finished(second.id, TAKEOVER_S + 90)
    assert one.state == "succeeded", (one.error, messages(one))
    assert_taken_over(one, running.owner, "succeeded")
    assert "completed while ferry was down" in messages(one)
    # The queued move was never started before the kill; the restarted server started it.
    assert two.state == "succeeded", (two.error, messages(two))
    assert two.started_at is not None and two.started_at > killed
    assert isinstance(two.report, MoveReport) and two.report.reconciled is None
    assert two.started_at >= (one.finished_at or 0)  # one slot: after the first ended
    for vm in vms:
        assert where_it_runs(lab, vm) == {"host2": "running"}
        assert_heartbeats_continue(lab, vm)


def test_live_migration_killed_in_pre_copy_is_followed_to_its_end(
    lab: LabEnv, make_vm: Callable[..., None], served: ServedFerry,
    slow_link: Callable[[str | None], None]
) -> None:
    make_vm("rp1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat,mem:128")
    assert lab.collector.wait_for_heartbeat("rp1", 90)
    known(served)
    slow_link("50mbit")  # 128 MiB of dirty memory: the pre-copy lasts half a minute
    job = served.client.migrate("rp1", "host2")
    running = wait_for(served, job.id, lambda j: memory_copied_mib(j) > 2,
                       "the pre-copy")

    kill_and_restart(served)
    # libvirt migrates on without ferry; the server that takes the job over follows it.
    wait_until(lambda: "following it to its end" in messages(served.job(job.id)),
               TAKEOVER_S, "the takeover to follow the migration")
    slow_link(None)
    done = served.wait_finished(job.id, 120)

    assert done.state == "succeeded", (done.error, messages(done))
    assert_taken_over(done, running.owner, "succeeded")
    assert "completed while ferry was down" in messages(done)
    assert where_it_runs(lab, "rp1") == {"host2": "running"}
    assert "Persistent:     yes" in lab.virsh("host2", "dominfo", "rp1").stdout
    assert_heartbeats_continue(lab, "rp1")


def test_storage_vmotion_killed_mid_copy_is_finished_by_the_restarted_server(
    lab: LabEnv, make_vm: Callable[..., None], served: ServedFerry
) -> None:
    make_vm("rsv1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "1536", "--workload", "heartbeat,disk", "--no-start")
    # Data after the disk writer's 64 MiB, so the copy lasts seconds on a local disk.
    fill_disk(SHARED / "rsv1-disk0.qcow2", "qcow2", 64, 1024)
    assert lab.ferry("vm", "start", "rsv1").code == 0
    assert lab.collector.wait_for_heartbeat("rsv1", 90)
    wait_until(lambda: lab.collector.disk_acked("rsv1") > 100, 60, "the guest's disk writer")
    known(served)
    job = served.client.migrate("rsv1", None, "local", "thin")
    running = wait_for(served, job.id, lambda j: file_copied_mib(j) > 16, "the mirror copy")
    acked = lab.collector.disk_acked("rsv1")

    kill_and_restart(served)
    done = served.wait_finished(job.id, TAKEOVER_S + 60)

    # QEMU's mirror went on without ferry; the server that took the job over switched
    # the VM to the copy once it had caught up.
    assert done.state == "succeeded", (done.error, messages(done))
    assert_taken_over(done, running.owner, "succeeded")
    assert "completed while ferry was down" in messages(done)
    assert where_it_runs(lab, "rsv1") == {"host1": "running"}
    target = "/var/lib/ferry-local/rsv1-vda.qcow2"
    assert disk_source(lab.virsh("host1", "dumpxml", "rsv1").stdout) == target
    assert disk_source(lab.virsh("host1", "dumpxml", "--inactive", "rsv1").stdout) == target
    assert "Block Copy" not in lab.virsh("host1", "blockjob", "rsv1", "vda", "--info").stdout
    # The copy is the VM's; its old file on the shared datastore was freed.
    assert files_of(lab, "rsv1") == {"host1/local": {"rsv1-vda.qcow2"}}
    assert_heartbeats_continue(lab, "rsv1")
    assert_every_acked_block(lab, served, "rsv1", acked)


def test_shared_nothing_move_killed_mid_copy_completes_without_ferry(
    lab: LabEnv, make_vm: Callable[..., None], served: ServedFerry,
    slow_link: Callable[[str | None], None]
) -> None:
    make_vm("rsn1", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "128", "--workload", "heartbeat,disk", "--no-start")
    fill_disk(local_datastore_dir("host1") / "rsn1-disk0.qcow2", "qcow2", 64, 48)
    assert lab.ferry("vm", "start", "rsn1").code == 0
    assert lab.collector.wait_for_heartbeat("rsn1", 90)
    wait_until(lambda: lab.collector.disk_acked("rsn1") > 100, 60, "the guest's disk writer")
    known(served)
    slow_link("50mbit")  # the disk crosses host1's link: seconds
    job = served.client.migrate("rsn1", "host2", "local", "thin")
    running = wait_for(served, job.id, lambda j: disks_copied_mib(j) > 8,
                       "the disk copy")
    acked = lab.collector.disk_acked("rsn1")

    kill_and_restart(served)
    wait_until(lambda: any(e.phase == "reconcile" for e in served.job(job.id).events),
               TAKEOVER_S, "the takeover")
    slow_link(None)
    done = served.wait_finished(job.id, 120)

    assert done.state == "succeeded", (done.error, messages(done))
    assert_taken_over(done, running.owner, "succeeded")
    assert "completed while ferry was down" in messages(done)
    assert where_it_runs(lab, "rsn1") == {"host2": "running"}
    new_path = "/var/lib/ferry-local/rsn1-vda.qcow2"
    assert disk_source(lab.virsh("host2", "dumpxml", "rsn1").stdout) == new_path
    assert disk_source(lab.virsh("host2", "dumpxml", "--inactive", "rsn1").stdout) == new_path
    # The copy is the VM's now; the source file was freed; nothing else is left.
    assert files_of(lab, "rsn1") == {"host2/local": {"rsn1-vda.qcow2"}}
    kinds = {(r.kind, r.host, r.state) for r in done.resources}
    assert ("source-volume", "host1", "removed") in kinds, done.resources
    assert_heartbeats_continue(lab, "rsn1")
    assert_every_acked_block(lab, served, "rsn1", acked)


def test_cold_move_killed_mid_copy_stays_where_it_was(
    lab: LabEnv, make_vm: Callable[..., None], served: ServedFerry,
    slow_link: Callable[[str | None], None]
) -> None:
    make_vm("rcd1", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "128", "--workload", "heartbeat", "--no-start")
    fill_disk(local_datastore_dir("host1") / "rcd1-disk0.qcow2", "qcow2", 64, 48)
    known(served)
    slow_link("50mbit")  # the file crosses host1's link: seconds
    job = served.client.migrate("rcd1", "host2", "local", cold=True)
    running = wait_for(served, job.id, lambda j: file_copied_mib(j) > 8, "the file copy")

    kill_and_restart(served)
    slow_link(None)
    done = served.wait_finished(job.id, TAKEOVER_S + 60)

    assert done.state == "failed", (done.error, messages(done))
    assert_taken_over(done, running.owner, "failed")
    assert "stays on host1" in messages(done)
    assert where_it_runs(lab, "rcd1") == {"host1": "shut off"}
    assert disk_source(lab.virsh("host1", "dumpxml", "--inactive", "rcd1").stdout) == \
        "/var/lib/ferry-local/rcd1-disk0.qcow2"
    # The partial copy on host2 is gone; the VM's own file is where it was.
    assert files_of(lab, "rcd1") == {"host1/local": {"rcd1-disk0.qcow2"}}
    assert any(r.host == "host2" and r.state == "removed" for r in done.resources), \
        done.resources
    assert served.client.power("rcd1", "on").state == "running"
    assert lab.collector.wait_for_heartbeat("rcd1", 60)
    assert_heartbeats_continue(lab, "rcd1")


def test_evacuation_killed_mid_moves_is_resumed_and_ends_truthfully(
    lab: LabEnv, make_vm: Callable[..., None], served: ServedFerry,
    slow_link: Callable[[str | None], None]
) -> None:
    vms = ["rev1", "rev2", "rev3"]
    for vm in vms:
        make_vm(vm, "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat,mem:32")
    for vm in vms:
        assert lab.collector.wait_for_heartbeat(vm, 90)
    known(served)
    slow_link("50mbit")  # each move lasts seconds: two run, one waits for a slot
    evacuation = served.client.enter_maintenance("host1")

    def moves_running(job: JobOut) -> bool:
        states = [m.state for m in progress_of(job, EvacuationProgress).vms.values()]
        return len(states) == 3 and states.count("running") == 2

    running = wait_for(served, evacuation.id, moves_running, "two moves running")
    time.sleep(1.0)  # well into their pre-copy

    kill_and_restart(served)
    slow_link(None)
    done = served.wait_finished(evacuation.id, TAKEOVER_S + 120)

    assert done.state == "succeeded", (done.error, messages(done))
    assert done.owner and done.owner != running.owner
    assert any(e.phase == "reconcile" and "taken over" in e.message for e in done.events)
    report = report_of(done, EvacuationReport)
    assert set(report.moved) == set(vms), report
    assert not report.not_moved
    for vm in vms:
        dest = report.moved[vm]
        assert dest in ("host2", "host3")
        assert where_it_runs(lab, vm) == {dest: "running"}
        child = served.job(report.jobs[vm])
        assert child.state == "succeeded" and child.dest_host == dest, (child.error, child.state)
    host1 = next(h for h in served.client.list_hosts() if h.name == "host1")
    assert host1.maintenance  # still in maintenance: nothing starts there
    for vm in vms:
        assert_heartbeats_continue(lab, vm)

"""The control plane's decisions and job bookkeeping, over the fake host boundary.

These prove ferry's own logic (validation, refusals, job states, rollback
reporting); real migration is proved by the lab integration tests.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_plane import finished, plane_over

from ferry.engine.controlplane import ControlPlane
from ferry.errors import InputError, NotFound, RefusedError
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState
from ferry.reports import LiveReport
from ferry.virt.base import MigrationStats
from ferry.virt.fake import Backing, FakeHost, FakeWorld

VM1 = VM(name="web1", uuid="u1", host="", state=VMState.RUNNING, memory_kib=2**20, vcpus=1,
         disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
         interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),))


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld()
    shared = Backing()
    for i in (1, 2, 3):
        host = FakeHost(world, f"host{i}", f"uuid-{i}")
        host.add_pool("shared", "/srv/shared", shared)
        host.add_pool("local", "/var/lib/local", Backing())
        host.add_network("Production" if i != 3 else "production")
    world.host("host1").add_vm(VM1)
    return world


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


def test_inventory_groups_datastores_by_probe(plane: ControlPlane) -> None:
    views = {d.name: d.hosts for d in plane.list_datastores()}
    assert views["shared"] == ("host1", "host2", "host3")
    assert views["local@host1"] == ("host1",)


def test_bad_input_names_the_object(plane: ControlPlane) -> None:
    with pytest.raises(NotFound, match="no VM named nope"):
        plane.start_migration("nope", "host2")
    with pytest.raises(NotFound, match="no host named host9"):
        plane.start_migration("web1", "host9")
    with pytest.raises(InputError, match="already runs on host1"):
        plane.start_migration("web1", "host1")
    with pytest.raises(RefusedError) as refused:  # the pre-flight row names the disk
        plane.start_migration("web1", None, "shared", disks=("vdz",))
    assert [(f.code, f.objects.get("disk")) for f in refused.value.findings] == [
        ("storage.disk-unknown", "vdz")]
    with pytest.raises(InputError, match="format 'fat'"):
        plane.start_migration("web1", None, "shared", "fat")
    with pytest.raises(InputError, match="unauthenticated"):
        plane.add_host("host4", "qemu+tcp://10.0.0.1/system")
    with pytest.raises(InputError, match="parameters"):
        plane.add_host("host4", "qemu+tls://h/system?pkipath=/etc")


def test_same_host_twice_is_refused(plane: ControlPlane) -> None:
    with pytest.raises(InputError, match="same host UUID"):
        plane.add_host("again", "qemu+tls://host1/system")


def test_refusal_lists_every_failing_requirement(plane: ControlPlane, world: FakeWorld) -> None:
    with pytest.raises(RefusedError) as refused:
        plane.start_migration("web1", "host3")
    assert [f.code for f in refused.value.findings] == ["network.case-mismatch"]
    assert plane.list_jobs() == []
    assert "web1" in world.host("host1").vms and "web1" not in world.host("host3").vms


def test_successful_migration_records_phases_and_report(plane: ControlPlane,
                                                         world: FakeWorld) -> None:
    world.host("host1").script = [
        MigrationStats(iteration=i, memory_total=2**30, memory_remaining=2**30 // i)
        for i in (1, 2, 3)]
    job = finished(plane, plane.start_migration("web1", "host2").id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert "web1" in world.host("host2").vms and "web1" not in world.host("host1").vms
    phases = [e.phase for e in job.events]
    for phase in ("requested", "state-check", "compatibility", "register-destination",
                  "switchover", "resumed-destination", "unregister-source", "done"):
        assert phase in phases
    assert phases.index("register-destination") < phases.index("switchover") < phases.index(
        "resumed-destination")
    assert isinstance(job.report, LiveReport) and job.report.downtime_ms == 42
    assert world.host("host1").downtimes[0] == 300  # the policy's initial downtime


def test_failed_migration_reports_vm_still_on_source(plane: ControlPlane,
                                                     world: FakeWorld) -> None:
    world.host("host1").fail_migration = "link down"
    job = finished(plane, plane.start_migration("web1", "host2").id)
    assert job.state is JobState.FAILED and "link down" in (job.error or "")
    assert isinstance(job.report, LiveReport)
    assert "is running on host1; nothing remains on host2" in (job.report.rollback or "")


def test_cancel_before_switchover(plane: ControlPlane, world: FakeWorld) -> None:
    world.host("host1").script = [MigrationStats(iteration=i) for i in range(1, 500)]
    job = plane.start_migration("web1", "host2")
    time.sleep(0.2)
    plane.cancel_job(job.id)
    done = finished(plane, job.id)
    assert done.state is JobState.CANCELLED
    assert "web1" in world.host("host1").vms and "web1" not in world.host("host2").vms
    # The emulated guest left running is paused and resumed (a lost timer interrupt cannot be
    # seen without a heartbeat), and the job says so.
    assert world.host("host1").kicks == ["web1"]
    assert world.host("host1").vms["web1"].state is VMState.RUNNING
    assert isinstance(done.report, LiveReport) and done.report.guest_after_rollback is not None
    assert done.report.guest_after_rollback.kicked
    assert any("paused and resumed web1" in e.message for e in done.events)
    with pytest.raises(InputError, match="already cancelled"):
        plane.cancel_job(job.id)


def test_a_host_belongs_to_one_cluster_at_a_time(plane: ControlPlane) -> None:
    plane.create_cluster("prod")
    plane.create_cluster("evc-new")
    assert plane.add_cluster_host("prod", "host1").hosts == ("host1",)
    with pytest.raises(InputError, match="host1 is in cluster prod: remove it from prod first"):
        plane.add_cluster_host("evc-new", "host1")
    with pytest.raises(InputError, match="host2 is not in cluster prod"):
        plane.remove_cluster_host("prod", "host2")
    with pytest.raises(NotFound, match="no host named host9"):
        plane.add_cluster_host("prod", "host9")
    with pytest.raises(NotFound, match="no cluster named nope"):
        plane.add_cluster_host("nope", "host2")
    with pytest.raises(InputError, match="invalid cluster name"):
        plane.create_cluster("bad name")
    assert plane.remove_cluster_host("prod", "host1").hosts == ()
    assert plane.add_cluster_host("evc-new", "host1").hosts == ("host1",)
    assert [h.cluster for h in plane.list_hosts() if h.name == "host1"] == ["evc-new"]
    plane.delete_cluster("prod")
    assert [c.name for c in plane.list_clusters()] == ["evc-new"]

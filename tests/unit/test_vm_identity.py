"""VMs by identity and one move per VM: the pure merge and resolution, then the control
plane over fake hosts that show a move as libvirt 9.0 does (see ferry.model.MigrationSide)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fake_plane import finished, plane_over, shared_world

from ferry.checks.facts import MoveRequest
from ferry.engine.controlplane import ControlPlane
from ferry.engine.identity import hold_of, merge_vms, resolve
from ferry.engine.jobs import JobHandle
from ferry.errors import AmbiguousName, NotFound, RefusedError, VMBusy
from ferry.job import Job, JobKind, JobState, Phase
from ferry.model import VM, Disk, Interface, MigrationSide, MoveHold, VMState
from ferry.store.db import Store
from ferry.virt.fake import FakeWorld

UUID1 = "6f1c0b0e-0000-4000-8000-000000000001"
UUID2 = "6f1c0b0e-0000-4000-8000-000000000002"
WEB1 = VM(name="web1", uuid=UUID1, host="host1", state=VMState.RUNNING, memory_kib=2**20,
          vcpus=1, disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
          interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),))


# -- pure ---------------------------------------------------------------------
def test_a_moving_vm_is_one_entry_on_its_source_marked_with_its_destination() -> None:
    source = replace(WEB1, migration=MigrationSide.OUTGOING)
    copy = replace(WEB1, host="host3", state=VMState.PAUSED, persistent=False,
                   migration=MigrationSide.INCOMING)
    for order in ([source, copy], [copy, source]):  # whichever host was listed last
        merged = merge_vms(order)
        assert list(merged) == [UUID1]
        assert merged[UUID1].host == "host1" and merged[UUID1].state is VMState.RUNNING
        assert merged[UUID1].moving == MoveHold(dest_host="host3")


def test_after_the_switchover_the_running_destination_is_the_vm() -> None:
    source = replace(WEB1, state=VMState.PAUSED, migration=MigrationSide.OUTGOING)
    dest = replace(WEB1, host="host0")  # resumed there; sorts before host1 by name too
    assert merge_vms([source, dest])[UUID1].host == "host0"
    dest = replace(WEB1, host="host3")
    assert merge_vms([dest, source])[UUID1].host == "host3"


def test_an_incoming_copy_whose_source_is_unknown_stays_marked_incoming() -> None:
    copy = replace(WEB1, host="host3", state=VMState.PAUSED, migration=MigrationSide.INCOMING)
    assert merge_vms([copy])[UUID1].migration is MigrationSide.INCOMING


def test_a_name_resolves_to_its_one_vm_or_asks_for_the_uuid() -> None:
    other = replace(WEB1, uuid=UUID2, host="host2")
    vms = merge_vms([WEB1, other, replace(WEB1, uuid="u3", name="db1")])
    assert resolve(vms, UUID2).host == "host2"
    assert resolve(vms, UUID1.upper()).host == "host1"
    assert resolve(vms, "db1").uuid == "u3"
    with pytest.raises(AmbiguousName) as ambiguous:
        resolve(vms, "web1")
    message = ambiguous.value.message
    assert f"on host1 with UUID {UUID1}" in message and f"on host2 with UUID {UUID2}" in message
    assert "give the UUID" in message
    assert ambiguous.value.matches == [("host1", UUID1), ("host2", UUID2)]
    with pytest.raises(NotFound, match="no VM named nope"):
        resolve(vms, "nope")


def test_ferrys_job_names_the_move_and_libvirt_names_one_ferry_did_not_start() -> None:
    job = Job(id="job-7", kind=JobKind.MIGRATE, vm="web1", source_host="host1", dest_host="host3",
              state=JobState.RUNNING, phase=Phase.PRECOPY, created_at=0.0, vm_uuid=UUID1)
    assert hold_of(WEB1, [job]) == MoveHold("host3", "job-7", "migrate", "running")
    assert hold_of(WEB1, [replace(job, state=JobState.SUCCEEDED)]) is None
    outgoing = replace(WEB1, migration=MigrationSide.OUTGOING)
    assert hold_of(outgoing, []) == MoveHold(dest_host=None)


# -- the control plane over fake hosts ----------------------------------------
@pytest.fixture
def world() -> FakeWorld:
    return shared_world(3, WEB1)


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


def test_a_vm_in_the_middle_of_a_move_is_shown_on_its_source_and_not_acted_on(
        plane: ControlPlane, world: FakeWorld) -> None:
    source, dest = world.host("host1"), world.host("host2")
    source.hold = threading.Event()
    job = plane.start_migration("web1", "host2")
    assert source.migrating.wait(5)
    plane.refresh()  # both copies listed, in either order
    try:
        listed = plane.list_vms()
        assert [(v.name, v.host, v.state) for v in listed] == [("web1", "host1",
                                                                 VMState.RUNNING)]
        hold = MoveHold("host2", job.id, "migrate", "running")
        assert listed[0].moving == hold and plane.get_vm("web1").moving == hold
        assert plane.get_vm(UUID1).host == "host1"
        for act in (lambda: plane.power("web1", "force-off"), lambda: plane.power(UUID1, "off"),
                    lambda: plane.delete_vm("web1"),
                    lambda: plane.start_migration("web1", "host3"),
                    lambda: plane.check(MoveRequest("web1", dest_host="host3"))):
            with pytest.raises(RefusedError) as refused:
                act()
            assert [f.code for f in refused.value.findings] == ["vm.moving"]
            finding = refused.value.findings[0]
            assert finding.objects["job"] == job.id and job.id in finding.message
            assert "migrate, running" in finding.message and "host2" in finding.message
        assert source.vms["web1"].state is VMState.RUNNING
        assert dest.vms["web1"].state is VMState.PAUSED  # the incoming copy, untouched
        assert [j.id for j in plane.list_jobs()] == [job.id]
    finally:
        source.hold.set()
    assert finished(plane, job.id).state is JobState.SUCCEEDED
    plane.refresh()
    assert plane.get_vm("web1").host == "host2" and plane.get_vm("web1").moving is None


def test_a_migration_ferry_did_not_start_is_named_as_such(plane: ControlPlane,
                                                          world: FakeWorld) -> None:
    world.host("host1").vms["web1"] = replace(WEB1, migration=MigrationSide.OUTGOING)
    world.host("host3").vms["web1"] = replace(WEB1, host="host3", state=VMState.PAUSED,
                                              persistent=False, migration=MigrationSide.INCOMING)
    plane.refresh()
    assert plane.get_vm("web1").moving == MoveHold(dest_host="host3")
    with pytest.raises(RefusedError, match="a migration ferry did not start"):
        plane.power("web1", "force-off")
    with pytest.raises(RefusedError, match="a migration ferry did not start"):
        plane.start_migration("web1", "host2")
    assert world.host("host3").vms["web1"].state is VMState.PAUSED


def test_a_migration_over_since_the_last_read_does_not_refuse(plane: ControlPlane,
                                                              world: FakeWorld) -> None:
    # The inventory was read while an admin's migration ran; it then failed, which
    # sends the source no event. libvirt's word is judged on a fresh read only.
    world.host("host1").vms["web1"] = replace(WEB1, migration=MigrationSide.OUTGOING)
    plane.refresh()
    world.host("host1").vms["web1"] = WEB1
    assert plane.get_vm("web1").moving == MoveHold(dest_host=None)  # as last read
    plane.check(MoveRequest("web1", dest_host="host2"))
    assert plane.power("web1", "force-off").state is VMState.SHUTOFF


def test_an_incoming_copy_alone_is_never_acted_on(plane: ControlPlane, world: FakeWorld) -> None:
    del world.host("host1").vms["web1"]  # its source is a host ferry does not manage
    world.host("host3").vms["web1"] = replace(WEB1, host="host3", state=VMState.PAUSED,
                                              migration=MigrationSide.INCOMING)
    plane.refresh()
    with pytest.raises(RefusedError, match="incoming copy") as refused:
        plane.power("web1", "force-off")
    assert refused.value.findings[0].code == "vm.moving"
    assert world.host("host3").vms["web1"].state is VMState.PAUSED


def test_two_vms_of_one_name_are_told_apart_by_uuid(plane: ControlPlane,
                                                    world: FakeWorld) -> None:
    world.host("host2").add_vm(replace(WEB1, uuid=UUID2))
    plane.refresh()
    assert sorted((v.host, v.uuid) for v in plane.list_vms()) == [("host1", UUID1),
                                                                   ("host2", UUID2)]
    with pytest.raises(AmbiguousName, match=f"host1 with UUID {UUID1}.*host2 with UUID {UUID2}"):
        plane.power("web1", "force-off")
    assert plane.power(UUID2, "force-off").host == "host2"
    assert world.host("host2").vms["web1"].state is VMState.SHUTOFF
    assert world.host("host1").vms["web1"].state is VMState.RUNNING
    job = plane.start_migration(UUID1, "host3")
    assert finished(plane, job.id).state is JobState.SUCCEEDED
    assert job.vm_uuid == UUID1 and "web1" in world.host("host3").vms


def test_two_requests_at_once_start_one_move(plane: ControlPlane, world: FakeWorld) -> None:
    world.host("host1").hold = threading.Event()
    barrier = threading.Barrier(2)
    outcomes: list[Job | BaseException] = []

    def request(dest: str) -> None:
        barrier.wait()
        try:
            outcomes.append(plane.start_migration("web1", dest))
        except BaseException as err:
            outcomes.append(err)

    threads = [threading.Thread(target=request, args=(d,)) for d in ("host2", "host3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    world.host("host1").hold.set()
    jobs = [o for o in outcomes if isinstance(o, Job)]
    refusals = [o for o in outcomes if isinstance(o, RefusedError)]
    assert len(jobs) == 1 and len(refusals) == 1, outcomes
    assert jobs[0].id in refusals[0].message
    assert refusals[0].findings[0].objects["job"] == jobs[0].id
    assert [j.id for j in plane.list_jobs()] == [jobs[0].id]
    finished(plane, jobs[0].id)


def test_the_store_refuses_a_second_move_even_past_every_earlier_check(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    try:
        first = JobHandle.create(store, JobKind.MIGRATE, "web1", "host1", "host2", UUID1)
        with pytest.raises(VMBusy) as busy:
            JobHandle.create(store, JobKind.COLD_MIGRATE, "web1", "host1", "host3", UUID1)
        assert [f.code for f in busy.value.findings] == ["vm.moving"]
        assert busy.value.findings[0].objects["job"] == first.id
        assert f"job {first.id} (migrate, queued)" in busy.value.message
    finally:
        store.close()


def test_the_cli_through_the_api_shows_the_move_and_refuses_naming_its_job(
        plane: ControlPlane, world: FakeWorld, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from auth_support import admin_accounts
    from fastapi.testclient import TestClient

    from ferry.api.app import create_app
    from ferry.cli import main as cli
    from ferry.cli.client import FerryClient

    source = world.host("host1")
    source.hold = threading.Event()
    job = plane.start_migration("web1", "host2")
    assert source.migrating.wait(5)
    plane.refresh()
    try:
        with TestClient(create_app(plane, admin_accounts(tmp_path, "t"))) as http:
            client = FerryClient(http=http, token="t")

            def run(*argv: str) -> tuple[int, str, str]:
                code = cli.main(list(argv), client=client, extensions=[])
                out, err = capsys.readouterr()
                return code, out, err

            code, out, _ = run("vm", "list")
            rows = out.splitlines()[1:]
            assert code == 0 and len(rows) == 1
            assert "host1" in rows[0] and f"moving to host2 (job {job.id}" in rows[0]
            code, out, _ = run("vm", "show", UUID1)
            assert code == 0 and "host1" in out and f"job {job.id}" in out
            code, _, err = run("vm", "stop", "web1", "--force")
            assert code == 4 and "vm.moving" in err and job.id in err
            code, _, err = run("migrate", "web1", "--host", "host3")
            assert code == 4 and "vm.moving" in err and job.id in err
    finally:
        source.hold.set()
    finished(plane, job.id)
    assert source.vms == {} and world.host("host2").vms["web1"].state is VMState.RUNNING

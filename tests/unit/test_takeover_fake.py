"""A server takes over the job of a server that died, on fake hosts.

The dead server's work is laid out by hand as it would have left it: the job
running under its lease, the files it recorded (and made) on the hosts, and
the VM wherever libvirt had got it to. A new control plane on the same
database takes the job over once the lease runs out and records the truth.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fake_plane import finished, plane_over
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.cli.client import FerryClient
from ferry.cli.main import main
from ferry.engine.jobs import JobHandle
from ferry.engine.reconcile import Reconciler
from ferry.job import JobKind, JobState, MoveSpec, Phase, ResourceKind, ResourceState
from ferry.model import VM, Disk, Host, Interface, MigrationSide, VMState
from ferry.store.db import Store
from ferry.virt.fake import Backing, FakeHost, FakeWorld
from ferry.virt.seam.data import MigrationOptions

SOURCE = "/var/lib/local/web1.qcow2"
TARGET = "/var/lib/local/web1-vda.qcow2"


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld()
    for i in (1, 2):
        host = FakeHost(world, f"host{i}", f"uuid-{i}")
        host.add_pool("local", "/var/lib/local", Backing())  # each host its own disk
        host.add_network("Production")
    host1 = world.host("host1")
    host1.create_volume("local", "web1.qcow2", 2**20, "qcow2")
    host1.add_vm(web1(SOURCE))
    return world


def web1(disk: str, state: VMState = VMState.RUNNING) -> VM:
    return VM(name="web1", uuid="u1", host="", state=state, memory_kib=2**18, vcpus=1,
              disks=(Disk("vda", "disk", "file", disk, "qcow2"),),
              interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),))


@pytest.fixture
def dead_servers_job(world: FakeWorld, tmp_path: Path) -> Iterator[str]:
    """A shared-nothing move of web1 to host2, left running by a server that died
    after it created the target file on host2."""
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    for name in ("host1", "host2"):
        store.add_host(Host(name=name, uri=f"qemu+tls://{name}/system"))
    dead = store.register_server("dead")
    handle = JobHandle.create(store, JobKind.MIGRATE_WITH_STORAGE, "web1", "host1", "host2",
                              "u1", spec=MoveSpec("u1", "host2", "local"),
                              slot_hosts=("host1", "host2"))
    assert [j.id for j in store.claim_startable(dead, 0.2)] == [handle.id]
    handle.owned_by(dead)
    target = handle.intend("host2", ResourceKind.VOLUME, "web1-vda.qcow2", "local")
    path = world.host("host2").create_volume("local", "web1-vda.qcow2", 2**20, "qcow2")
    handle.resource(target, ResourceState.CREATED, path)
    handle.intend("host1", ResourceKind.SOURCE_VOLUME, "web1.qcow2", "local", SOURCE)
    handle.event(Phase.PRECOPY, "copying disks and memory")
    store.close()
    yield handle.id


def volumes(world: FakeWorld, host: str) -> set[str]:
    return set(world.host(host).list_volumes("local"))


def test_a_move_libvirt_completed_while_ferry_was_down_is_recorded_as_succeeded(
        world: FakeWorld, tmp_path: Path, dead_servers_job: str) -> None:
    world.host("host1").vms.pop("web1")  # libvirt finished the move meanwhile
    world.host("host2").add_vm(web1(TARGET))
    with plane_over(world, tmp_path, register=False) as plane:
        job = finished(plane, dead_servers_job, timeout=20)
    assert job.state is JobState.SUCCEEDED and job.error is None
    assert any("completed while ferry was down" in e.message for e in job.events)
    assert job.owner != "dead"
    # the source file is freed, the copy is the VM's
    assert volumes(world, "host1") == set() and volumes(world, "host2") == {"web1-vda.qcow2"}
    assert {r.kind: r.state for r in job.resources} == {
        ResourceKind.VOLUME: ResourceState.ADOPTED,
        ResourceKind.SOURCE_VOLUME: ResourceState.REMOVED}


def test_a_move_that_did_not_complete_leaves_the_vm_and_removes_what_ferry_made(
        world: FakeWorld, tmp_path: Path, dead_servers_job: str) -> None:
    with plane_over(world, tmp_path, register=False) as plane:
        job = finished(plane, dead_servers_job, timeout=20)
    assert job.state is JobState.FAILED
    assert "stays on host1" in " ".join(e.message for e in job.events)
    assert world.host("host1").get_vm("web1").state is VMState.RUNNING  # type: ignore[union-attr]
    assert world.host("host2").get_vm("web1") is None
    assert volumes(world, "host1") == {"web1.qcow2"} and volumes(world, "host2") == set()
    assert {r.kind: r.state for r in job.resources} == {
        ResourceKind.VOLUME: ResourceState.REMOVED,
        ResourceKind.SOURCE_VOLUME: ResourceState.KEPT}


def test_a_migration_libvirt_still_runs_is_followed_to_its_end(
        world: FakeWorld, tmp_path: Path, dead_servers_job: str) -> None:
    host1 = world.host("host1")
    host1.hold = threading.Event()  # libvirt's copy goes on without any ferry server
    copy = threading.Thread(target=host1.migrate, args=(
        "web1", MigrationOptions("qemu+tls://host2/system")), daemon=True)
    copy.start()
    with plane_over(world, tmp_path, register=False) as plane:
        def followed() -> bool:
            events = plane.get_job(dead_servers_job).events
            return any("following it to its end" in e.message for e in events)

        deadline = threading.Event()
        for _ in range(200):
            if followed():
                break
            deadline.wait(0.05)
        assert followed(), "the new server did not see libvirt's migration"
        assert host1.get_vm("web1").migration is MigrationSide.OUTGOING  # type: ignore[union-attr]
        assert plane.get_job(dead_servers_job).state is JobState.RUNNING
        host1.hold.set()  # libvirt completes the move
        copy.join(5)
        job = finished(plane, dead_servers_job, timeout=20)
    assert job.state is JobState.SUCCEEDED, job.error
    assert host1.get_vm("web1") is None
    assert world.host("host2").get_vm("web1").state is VMState.RUNNING  # type: ignore[union-attr]


def test_the_servers_and_the_takeover_are_shown_to_the_admin(
        world: FakeWorld, tmp_path: Path, dead_servers_job: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    world.host("host1").vms.pop("web1")
    world.host("host2").add_vm(web1(TARGET))
    with plane_over(world, tmp_path, register=False) as plane, \
            TestClient(create_app(plane, admin_accounts(tmp_path, "t0ken"))) as http:
        finished(plane, dead_servers_job, timeout=20)
        cli = FerryClient(http=http, token="t0ken")
        assert main(["servers"], client=cli) == 0
        lines = capsys.readouterr().out.splitlines()
        # this server first, alive, running nothing now; the dead one holds no job
        assert "(this one)" in lines[1] and "alive" in lines[1]
        dead = [line.split() for line in lines if line.startswith("dead ")]
        assert len(dead) == 1 and dead[0][-1] == "0"
        assert main(["job", "show", dead_servers_job, "--json"], client=cli) == 0
        shown = json.loads(capsys.readouterr().out)
        this = plane.list_servers()[0]
    assert shown["state"] == "succeeded" and shown["owner"] == this.id and this.name != "dead"
    assert {(r["host"], r["kind"], r["state"]) for r in shown["resources"]} == {
        ("host2", "volume", "adopted"), ("host1", "source-volume", "removed")}
    assert shown["report"]["reconciled"]["outcome"] == "succeeded"


def test_a_host_that_never_answers_ends_the_job_unconfirmed_and_touches_nothing(
        world: FakeWorld, tmp_path: Path, dead_servers_job: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    try:
        time.sleep(0.3)  # the dead server's lease runs out
        taker = store.register_server("b")
        [job] = store.take_over_expired(taker, 10.0)
        world.host("host2").go_down()
        reconciler = Reconciler(world.connect_by_name, lambda _h: None, retry_s=0.05,
                                give_up_s=0.3)
        reconciler.run(JobHandle(store, job, taker))
        done = store.job(dead_servers_job)
    finally:
        store.close()
    assert done.state is JobState.FAILED
    assert "host2 does not answer" in (done.error or "")
    assert any("waiting for the hosts to answer" in e.message for e in done.events)
    # undecided: the file made on host2 is still recorded, and still there
    assert {r.kind: r.state for r in done.resources} == {
        ResourceKind.VOLUME: ResourceState.CREATED,
        ResourceKind.SOURCE_VOLUME: ResourceState.CREATED}
    world.host("host2").come_up()
    assert volumes(world, "host2") == {"web1-vda.qcow2"}
    assert world.host("host1").get_vm("web1").state is VMState.RUNNING  # type: ignore[union-attr]


def test_a_storage_copy_left_running_is_finished_by_the_server_that_takes_it_over(
        world: FakeWorld, tmp_path: Path) -> None:
    host1 = world.host("host1")
    host1.add_pool("fast", "/var/lib/fast", Backing())
    host1.mirror_polls = 3  # QEMU's mirror catches up a little after the takeover
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    store.add_host(Host(name="host1", uri="qemu+tls://host1/system"))
    dead = store.register_server("dead")
    handle = JobHandle.create(store, JobKind.STORAGE_MIGRATE, "web1", "host1", "host1", "u1",
                              spec=MoveSpec("u1", None, "fast"), slot_hosts=("host1",))
    store.claim_startable(dead, 0.2)
    handle.owned_by(dead)
    target = handle.intend("host1", ResourceKind.VOLUME, "web1-vda.qcow2", "fast")
    path = host1.create_volume("fast", "web1-vda.qcow2", 2**20, "qcow2")
    handle.resource(target, ResourceState.CREATED, path)
    handle.intend("host1", ResourceKind.SOURCE_VOLUME, "web1.qcow2", "local", SOURCE)
    host1.block_copy("web1", "vda", path, "qcow2", synchronous=False)
    handle.event(Phase.PRECOPY, "mirroring")
    store.close()
    with plane_over(world, tmp_path, register=False) as plane:
        job = finished(plane, handle.id, timeout=20)
    assert job.state is JobState.SUCCEEDED, job.error
    assert any("switching the VM to them" in e.message for e in job.events)
    running = host1.get_vm("web1")
    assert running is not None and running.disks[0].source == path
    assert path in host1.definitions["web1"] and SOURCE not in host1.definitions["web1"]
    assert volumes(world, "host1") == set()  # the source file is freed
    assert set(host1.list_volumes("fast")) == {"web1-vda.qcow2"}

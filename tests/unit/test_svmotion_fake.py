"""Storage VMotion run whole on the fake host, through the control plane.

The fake copies a disk's bytes when a block copy starts and switches only the
live disk at the pivot, as libvirt does; these tests check what a user would:
where the VM's disk is afterwards, which files exist, and the job's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_plane import finished, plane_over, volume_bytes

from ferry.engine.controlplane import ControlPlane
from ferry.errors import VirtError
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState
from ferry.virt.base import ImageInfo
from ferry.virt.fake import Backing, FakeHost, FakeWorld
from ferry.virt.fake_storage import QCOW2_MAGIC, disk_of

DATA = b"the guest's data" * 4096


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld()
    host = FakeHost(world, "host1", "uuid-1")
    host.add_pool("slow", "/srv/slow", Backing())
    host.add_pool("fast", "/srv/fast", Backing())
    host.add_network("Production")
    source = host.create_volume("slow", "web1.qcow2", 2**24, "qcow2")
    data_disk = host.create_volume("slow", "web1-data.img", 2**22, "raw")
    host.write_volume(data_disk, [DATA])
    host.add_vm(VM(name="web1", uuid="u1", host="", state=VMState.RUNNING, memory_kib=2**20,
                   vcpus=1, disks=(Disk("vda", "disk", "file", source, "qcow2"),
                                   Disk("vdb", "disk", "file", data_disk, "raw")),
                   interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),)))
    return world


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


def test_the_disks_move_and_the_sources_are_deleted(plane: ControlPlane,
                                                      world: FakeWorld) -> None:
    host = world.host("host1")
    job = finished(plane, plane.start_migration("web1", None, "fast").id)
    assert job.state is JobState.SUCCEEDED, job.error
    vm = host.get_vm("web1")
    assert vm is not None and vm.state is VMState.RUNNING
    assert [d.source for d in vm.disks] == ["/srv/fast/web1-vda.qcow2", "/srv/fast/web1-vdb.img"]
    assert host.pools["slow"][1].files == set()
    assert volume_bytes(host, "/srv/fast/web1-vdb.img")[:len(DATA)] == DATA
    assert host.volume_size("/srv/fast/web1-vda.qcow2")[0] == 2**24
    saved = host.saved_definition("web1", {})  # it boots from the new files too
    assert "/srv/fast/web1-vdb.img" in saved and "/srv/slow" not in saved


def test_a_failed_pivot_removes_the_copies_and_keeps_the_vm_on_its_disks(
        plane: ControlPlane, world: FakeWorld) -> None:
    host = world.host("host1")
    host.faults["pivot_block_copy"] = VirtError("QEMU refused the switch")
    job = finished(plane, plane.start_migration("web1", None, "fast").id)
    assert job.state is JobState.FAILED and "QEMU refused the switch" in (job.error or "")
    assert host.pools["fast"][1].files == set()
    assert host.pools["slow"][1].files == {"web1.qcow2", "web1-data.img"}
    vm = host.get_vm("web1")
    assert vm is not None and [d.source for d in vm.disks] == [
        "/srv/slow/web1.qcow2", "/srv/slow/web1-data.img"]
    assert host.block_jobs("web1") == []


def test_cancel_during_the_mirror_stops_the_copies_and_removes_them(
        plane: ControlPlane, world: FakeWorld) -> None:
    host = world.host("host1")
    host.mirror_polls = None  # the copies never catch up: the move waits for them
    job_id = plane.start_migration("web1", None, "fast").id
    deadline = time.monotonic() + 5
    while not host.block_jobs("web1") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.block_jobs("web1")
    plane.cancel_job(job_id)
    job = finished(plane, job_id)
    assert job.state is JobState.CANCELLED
    assert host.block_jobs("web1") == []
    assert host.pools["fast"][1].files == set()
    assert [d.source for d in host.get_vm("web1").disks] == [  # type: ignore[union-attr]
        "/srv/slow/web1.qcow2", "/srv/slow/web1-data.img"]


@pytest.mark.parametrize("disk_format", ["same", "thin"])
def test_a_raw_disk_spelling_a_qcow2_header_is_mirrored_as_its_guest_sees_it(
        plane: ControlPlane, world: FakeWorld, disk_format: str) -> None:
    # vdb is raw; its guest wrote a qcow2 header at its start, naming a host file.
    host = world.host("host1")
    lure = QCOW2_MAGIC + (2**30).to_bytes(8, "big") + b"/etc/hostname"
    host.write_volume("/srv/slow/web1-data.img", [lure])
    host.images["/srv/slow/web1-data.img"] = ImageInfo(
        "/srv/slow/web1-data.img", "qcow2", "/etc/hostname", "raw")
    seen = volume_bytes(host, "/srv/slow/web1-data.img")
    job = finished(plane, plane.start_migration("web1", None, "fast", disk_format,
                                                disks=("vdb",)).id)
    assert job.state is JobState.SUCCEEDED, job.error
    moved = host.get_vm("web1")
    assert moved is not None
    [vdb] = [d for d in moved.disks if d.target == "vdb"]
    name = (vdb.source or "").rsplit("/", 1)[-1]
    target = disk_of(host.pools["fast"][1].volumes[name], vdb.driver_format)
    assert b"".join(c if isinstance(c, bytes) else bytes(c) for c in target.chunks()) == seen

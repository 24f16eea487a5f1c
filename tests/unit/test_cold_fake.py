"""Cold migration run whole on fake hosts, through the control plane.

The fake streams volumes' bytes and reads formats from them, so a copy here
carries the data a user would check: the target's bytes, the definition on the
destination, and which files are left on each host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from fake_plane import finished, plane_over, volume_bytes

from ferry.checks.facts import MoveRequest
from ferry.engine.controlplane import ControlPlane
from ferry.errors import RefusedError, VirtError
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState
from ferry.virt.base import ImageInfo
from ferry.virt.fake import Backing, FakeHost, FakeWorld
from ferry.virt.fake_storage import QCOW2_MAGIC

DATA = b"written by the guest before it was shut down" * 2000


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld()
    for i in (1, 2):
        host = FakeHost(world, f"host{i}", f"uuid-{i}")
        host.add_pool("local", "/var/lib/local", Backing())
        host.add_network("Production")
    host1 = world.host("host1")
    disk = host1.create_volume("local", "web1.img", 2**22, "raw")
    host1.write_volume(disk, [DATA, 2**21, b"tail"])
    host1.add_vm(VM(name="web1", uuid="u1", host="", state=VMState.SHUTOFF, memory_kib=2**20,
                    vcpus=1, disks=(Disk("vda", "disk", "file", disk, "raw"),),
                    interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),)))
    return world


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


def _left_where_it_was(world: FakeWorld) -> None:
    host1, host2 = world.host("host1"), world.host("host2")
    assert "web1" in host1.vms and "web1" not in host2.vms
    assert host1.pools["local"][1].files == {"web1.img"}
    assert host2.pools["local"][1].files == set()


def test_the_vm_moves_with_its_bytes_and_the_source_is_deleted(
        plane: ControlPlane, world: FakeWorld) -> None:
    host1, host2 = world.host("host1"), world.host("host2")
    expected = volume_bytes(host1, "/var/lib/local/web1.img")
    job = finished(plane, plane.start_migration("web1", "host2", "local", cold=True).id)
    assert job.state is JobState.SUCCEEDED, job.error
    moved = host2.get_vm("web1")
    assert moved is not None and moved.state is VMState.SHUTOFF and moved.uuid == "u1"
    assert [(d.source, d.driver_format) for d in moved.disks] == [
        ("/var/lib/local/web1-vda.img", "raw")]
    assert volume_bytes(host2, "/var/lib/local/web1-vda.img") == expected
    assert host1.get_vm("web1") is None and host1.pools["local"][1].files == set()


def test_a_disk_converted_to_qcow2_keeps_the_guestsvolume_bytes(
        plane: ControlPlane, world: FakeWorld) -> None:
    host2 = world.host("host2")
    job = finished(plane, plane.start_migration("web1", "host2", "local", "thin",
                                                cold=True).id)
    assert job.state is JobState.SUCCEEDED, job.error
    moved = host2.get_vm("web1")
    assert moved is not None and moved.disks[0].driver_format == "qcow2"
    path = moved.disks[0].source or ""
    assert host2.image_info(path).read_as == "qcow2"  # type: ignore[union-attr]
    assert host2.volume_size(path)[0] == 2**22
    # staging files are gone: only the VM's disk is left on host2
    assert host2.pools["local"][1].files == {path.rsplit("/", 1)[-1]}


def test_a_failure_before_the_switch_removes_every_file_ferry_created(
        plane: ControlPlane, world: FakeWorld) -> None:
    world.host("host2").faults["define_vm"] = VirtError("host2 refused the definition")
    job = finished(plane, plane.start_migration("web1", "host2", "local", cold=True).id)
    assert job.state is JobState.FAILED and "refused the definition" in (job.error or "")
    _left_where_it_was(world)
    assert world.host("host1").get_vm("web1").state is VMState.SHUTOFF  # type: ignore[union-attr]


def test_cancel_during_the_copy_removes_the_target(
        plane: ControlPlane, world: FakeWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    host2 = world.host("host2")
    writing, release = threading.Event(), threading.Event()
    write = host2.write_volume

    def held(path: str, chunks: Iterable[bytes | int]) -> None:
        writing.set()
        release.wait(5)  # the copy is under way when the user cancels
        write(path, chunks)

    monkeypatch.setattr(host2, "write_volume", held)
    job_id = plane.start_migration("web1", "host2", "local", cold=True).id
    assert writing.wait(5)
    plane.cancel_job(job_id)
    time.sleep(0.05)
    release.set()
    job = finished(plane, job_id)
    assert job.state is JobState.CANCELLED
    _left_where_it_was(world)


def _lure(world: FakeWorld) -> bytes:
    """web1's raw disk, its first bytes now a qcow2 header naming a host file as backing
    (as its guest could write them); host1's storage reads it as qcow2, as libvirt does."""
    host1 = world.host("host1")
    path = "/var/lib/local/web1.img"
    host1.write_volume(path, [QCOW2_MAGIC + (2**30).to_bytes(8, "big") + b"/etc/hostname"])
    host1.images[path] = ImageInfo(path, "qcow2", "/etc/hostname", "raw")
    return volume_bytes(host1, path)


def test_a_raw_disk_spelling_a_qcow2_header_is_copied_as_the_bytes_it_is(
        plane: ControlPlane, world: FakeWorld) -> None:
    expected = _lure(world)
    report = plane.check(MoveRequest("web1", "host2", "local", cold=True))
    assert not [r for r in report if "/etc/hostname" in r.message + str(r.objects)]
    job = finished(plane, plane.start_migration("web1", "host2", "local", cold=True).id)
    assert job.state is JobState.SUCCEEDED, job.error
    moved = world.host("host2").get_vm("web1")
    assert moved is not None and [(d.source, d.driver_format) for d in moved.disks] == [
        ("/var/lib/local/web1-vda.img", "raw")]
    assert volume_bytes(world.host("host2"), "/var/lib/local/web1-vda.img") == expected


def test_a_raw_disk_spelling_a_qcow2_header_is_not_converted(
        plane: ControlPlane, world: FakeWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    _lure(world)
    with pytest.raises(RefusedError) as refused:
        plane.start_migration("web1", "host2", "local", "thin", cold=True)
    [row] = [f for f in refused.value.findings if f.code == "storage.format-mismatch"]
    assert row.objects["disk"] == "vda" and "declared raw" in row.message
    _left_where_it_was(world)
    # Should the bytes change after the check, the copy reads the image again and stops.
    host1 = world.host("host1")
    probe = host1.image_info
    checking = threading.current_thread()
    monkeypatch.setattr(host1, "image_info", lambda path: (
        ImageInfo(path, "raw") if threading.current_thread() is checking else probe(path)))
    job = finished(plane, plane.start_migration("web1", "host2", "local", "thin",
                                                cold=True).id)
    assert job.state is JobState.FAILED
    assert "disk vda" in (job.error or "") and "declared raw but its bytes read as qcow2" in (
        job.error or "")
    _left_where_it_was(world)

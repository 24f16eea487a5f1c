"""Device checks: CPU affinity, removable media, block-backed disks, block jobs."""

from preflight_fixtures import codes, facts, only, storage_move, vm

from ferry.checks import devices
from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Status
from ferry.model import CpuAffinity, Disk


def test_affinity_names_every_pinning() -> None:
    assert devices.no_cpu_affinity(facts())[0].code == "vm.no-cpu-affinity"
    pinned = vm(affinity=CpuAffinity(vcpupin=("0-1",), emulatorpin="3"))
    [row] = devices.no_cpu_affinity(facts(vm=pinned))
    assert (row.code, row.status) == ("vm.cpu-affinity", Status.ERROR)
    assert "<vcpupin>" in row.message and "<emulatorpin cpuset='3'>" in row.message
    assert "vcpu cpuset" not in row.message


def test_media_on_host_device_is_an_error_iso_and_empty_pass() -> None:
    the_vm = vm(disks=(Disk("hdc", "cdrom", "block", "/dev/sr0"),
                       Disk("hdd", "cdrom", "file", "/srv/shared/x.iso"),
                       Disk("fda", "floppy", "none", None)))
    rows = devices.removable_media(facts(vm=the_vm))
    assert [(r.code, r.status) for r in rows] == [
        ("device.host-media", Status.ERROR), ("device.media-file", Status.PASS),
        ("device.media-empty", Status.PASS)]
    assert rows[0].objects == {"vm": "web1", "disk": "hdc", "host": "host1", "device": "/dev/sr0"}


def test_host_device_remedy_names_the_image_of_its_drive() -> None:
    the_vm = vm(disks=(Disk("fda", "floppy", "block", "/dev/fd0"),
                       Disk("hdc", "cdrom", "block", "/dev/sr0")))
    floppy, cdrom = (r.remedy for r in devices.removable_media(facts(vm=the_vm)))
    assert "floppy image" in floppy and "ISO" not in floppy
    assert "'virsh change-media web1 fda --eject'" in floppy
    assert "ISO" in cdrom and "floppy" not in cdrom


LUN = Disk("sda", "lun", "block", "/dev/disk/by-id/wwn-1")
VIRT = Disk("vdb", "disk", "block", "/dev/vg/data")


def test_block_devices_must_exist_on_destination() -> None:
    the_vm = vm(disks=(LUN, VIRT, Disk("vdc", "disk", "block", "/dev/vg/logs")))
    rows = devices.block_devices_on_dest(facts(
        vm=the_vm, block_devices_on_dest={"/dev/disk/by-id/wwn-1": True, "/dev/vg/data": False}))
    assert [(r.code, r.status) for r in rows] == [
        ("device.block-present", Status.PASS), ("device.block-missing", Status.ERROR),
        ("device.block-unverified", Status.WARNING)]
    assert rows[1].objects["device"] == "/dev/vg/data" and rows[1].objects["host"] == "host2"
    assert "virtual-mode" in rows[1].message and "physical-mode" in rows[0].message


def test_block_disk_copied_to_a_file_needs_no_device_but_a_lun_does() -> None:
    both = MoveRequest(vm="web1", dest_host="host2", dest_datastore="nfs")
    rows = devices.block_devices_on_dest(facts(vm=vm(disks=(LUN, VIRT)), request=both))
    assert codes(rows, Status.PASS) == ["device.block-copied"]
    assert codes(rows, Status.WARNING) == ["device.block-unverified"]
    assert only(rows, "device.block-unverified").objects["disk"] == "sda"


def test_running_block_job_names_the_disks() -> None:
    [row] = devices.no_block_jobs(facts(request=storage_move(), block_jobs=("vda", "vdb")))
    assert (row.code, row.status) == ("vm.block-job-running", Status.ERROR)
    assert "vda, vdb" in row.message and row.objects == {"vm": "web1", "disk": "vda, vdb"}

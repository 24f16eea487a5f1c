"""Storage VMotion in the lab: a running VM's disk moves datastore while the guest writes."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, define, disk_source, report_of, wait_until

from ferry.cli.client import FerryClient
from ferry.lab.lab import local_datastore_dir
from ferry.reports import StorageReport

pytestmark = pytest.mark.lab


def test_live_storage_migration_keeps_every_acknowledged_block(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("sv1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "64", "--workload", "heartbeat,disk")
    collector = lab.collector
    assert collector.wait_for_heartbeat("sv1", 60)
    wait_until(lambda: collector.disk_acked("sv1") > 200, 60, "the guest's disk writer")
    acked_before = collector.disk_acked("sv1")
    assert "sv1-disk0.qcow2" in lab.volumes("host1", "shared")

    result = lab.ferry("migrate", "sv1", "--datastore", "local", "--format", "thin")

    assert result.code == 0, result.err
    new_path = "/var/lib/ferry-local/sv1-vda.qcow2"
    assert lab.domains("host1").get("sv1") == "running"
    assert disk_source(lab.virsh("host1", "dumpxml", "sv1").stdout) == new_path
    assert disk_source(lab.virsh("host1", "dumpxml", "--inactive", "sv1").stdout) == new_path
    assert "sv1-disk0.qcow2" not in lab.volumes("host1", "shared")  # source deleted
    assert "sv1-vda.qcow2" in lab.volumes("host1", "local")
    client = FerryClient()
    job = client.get_job(client.list_jobs(limit=1)[0].id)
    assert (job.kind, job.state) == ("storage-migrate", "succeeded")
    report = report_of(job, StorageReport)
    assert report.disks["vda"].mode in ("background", "synchronous")
    assert report.heartbeat_lost == 0  # the guest never stopped
    # The guest kept writing through the move, and every acknowledged block is intact.
    wait_until(lambda: collector.disk_acked("sv1") > acked_before + 100, 60,
               "disk writes after the move")
    vm = client.get_vm("sv1")
    assert vm.lab_address
    verdict = collector.request_verify("sv1", vm.lab_address)
    assert verdict.ok and verdict.corrupt == 0 and verdict.stale == 0, verdict
    assert verdict.written > 0 and verdict.max_seq >= acked_before


def test_failed_storage_move_leaves_vm_and_files_as_they_were(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("sv2", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--workload", "heartbeat")
    # Someone else's file already has the name ferry would give the copy.
    lab.virsh("host1", "vol-create-as", "local", "sv2-vda.qcow2", "1M", "--format", "qcow2")
    try:
        result = lab.ferry("migrate", "sv2", "--datastore", "local")
        assert result.code == 6, result.err
        assert "sv2-vda.qcow2" in result.err
        assert lab.domains("host1").get("sv2") == "running"
        source = "/var/lib/ferry-lab/datastores/shared/sv2-disk0.qcow2"
        assert disk_source(lab.virsh("host1", "dumpxml", "sv2").stdout) == source
        assert "sv2-disk0.qcow2" in lab.volumes("host1", "shared")
        # The file ferry did not create is still there, untouched.
        assert "sv2-vda.qcow2" in lab.volumes("host1", "local")
        info = lab.virsh("host1", "vol-info", "--pool", "local", "sv2-vda.qcow2").stdout
        assert "1.00 MiB" in info
    finally:
        lab.virsh("host1", "vol-delete", "--pool", "local", "sv2-vda.qcow2", check=False)


def test_thick_eager_copy_is_fully_written_and_keeps_every_block(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("sv3", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "64", "--workload", "heartbeat,disk")
    collector = lab.collector
    assert collector.wait_for_heartbeat("sv3", 60)
    wait_until(lambda: collector.disk_acked("sv3") > 200, 60, "the guest's disk writer")

    result = lab.ferry("migrate", "sv3", "--datastore", "local", "--format", "thick-eager")

    assert result.code == 0, result.err
    target = local_datastore_dir("host1") / "sv3-vda.img"
    assert disk_source(lab.virsh("host1", "dumpxml", "sv3").stdout) == \
        "/var/lib/ferry-local/sv3-vda.img"
    assert 'type="raw"' in lab.virsh("host1", "dumpxml", "--inactive", "sv3").stdout.replace(
        "'", '"')
    # Thick: every byte of the raw file is allocated, though the mirror gave zeros back.
    assert target.stat().st_size == 64 * 2**20
    assert target.stat().st_blocks * 512 >= 64 * 2**20
    acked = collector.disk_acked("sv3")
    wait_until(lambda: collector.disk_acked("sv3") > acked + 100, 60, "writes after the move")
    vm = FerryClient().get_vm("sv3")
    assert vm.lab_address
    verdict = collector.request_verify("sv3", vm.lab_address)
    assert verdict.ok and verdict.corrupt == 0 and verdict.stale == 0, verdict


def test_virtual_mode_block_disk_is_copied_into_a_file(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    # The "LUN": a loop device holding a known pattern; the guest does not write it.
    image = tmp_path / "lun.img"
    image.write_bytes(bytes(range(256)) * (16 * 2**20 // 256))
    loop = subprocess.run(["losetup", "--find", "--show", str(image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        make_vm("blk1", "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "16", "--workload", "heartbeat", "--no-start")
        root = ET.fromstring(lab.virsh("host1", "dumpxml", "--inactive", "blk1").stdout)
        devices = root.find("devices")
        assert devices is not None
        disk = ET.SubElement(devices, "disk", type="block", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none", io="native")
        ET.SubElement(disk, "source", dev=loop)
        ET.SubElement(disk, "target", dev="vdb", bus="virtio")
        define(lab, "host1", ET.tostring(root, encoding="unicode"), tmp_path)
        assert lab.collector.wait_for_heartbeat("blk1", 60)

        result = lab.ferry("migrate", "blk1", "--datastore", "local", "--disk", "vdb")

        assert result.code == 0, result.err
        new_file = "/var/lib/ferry-local/blk1-vdb.img"
        for flags in ((), ("--inactive",)):
            xml = lab.virsh("host1", "dumpxml", *flags, "blk1").stdout
            assert disk_source(xml, "vdb") == new_file, flags
        assert disk_source(lab.virsh("host1", "dumpxml", "blk1").stdout, "vda") == \
            "/var/lib/ferry-lab/datastores/shared/blk1-disk0.qcow2"  # not asked to move
        copied = (local_datastore_dir("host1") / "blk1-vdb.img").read_bytes()
        assert copied == image.read_bytes()
        assert Path(loop).exists()  # the device is not ferry's to delete
        assert lab.domains("host1").get("blk1") == "running"
    finally:
        lab.ferry("vm", "delete", "blk1")
        subprocess.run(["losetup", "-d", loop], check=False)

"""Storage VMotion in the lab: a running VM's disk moves datastore while the guest writes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import LabEnv, disk_source, wait_until

from ferry.cli.client import FerryClient

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
    assert job.report["disks"]["vda"]["mode"] in ("background", "synchronous")
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

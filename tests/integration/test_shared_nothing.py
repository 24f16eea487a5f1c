"""Shared-nothing live migration in the lab: memory and disks move host to host together.

The source VM's disks are on host1's own ``local`` datastore, which no other
host sees; ferry creates the target files in host2's ``local`` datastore and
QEMU copies the disks over NBD while the guest writes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    LabEnv,
    disk_source,
    fill_disk,
    heartbeat_back_ms,
    progress_of,
    report_of,
    wait_until,
)

from ferry.api.schemas import JobOut
from ferry.cli.client import FerryClient
from ferry.lab.hosts import host_exec
from ferry.lab.lab import crash_libvirtd, local_datastore_dir, restart_libvirtd, set_link
from ferry.lab.layout import LAB_ROOT
from ferry.reports import LiveProgress, LiveReport

pytestmark = pytest.mark.lab

NEW_PATH = "/var/lib/ferry-local/{vm}-vda.qcow2"


def test_memory_and_disks_move_together_while_the_guest_writes(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("sn1", "--host", "host1", "--datastore", "local", "--memory", "256",
            "--disk", "64", "--workload", "heartbeat,disk")
    collector = lab.collector
    assert collector.wait_for_heartbeat("sn1", 60)
    wait_until(lambda: collector.disk_acked("sn1") > 200, 60, "the guest's disk writer")
    acked_before = collector.disk_acked("sn1")
    # Without a datastore the move is refused: host2 does not see host1's local disk.
    refused = lab.ferry("migrate", "sn1", "--host", "host2")
    assert refused.code == 4 and "sn1-disk0.qcow2" in refused.err, refused.err

    result = lab.ferry("migrate", "sn1", "--host", "host2", "--datastore", "local",
                       "--format", "thin")

    assert result.code == 0, result.err
    new_path = NEW_PATH.format(vm="sn1")
    assert lab.domains("host2").get("sn1") == "running"
    assert "sn1" not in lab.domains("host1")
    assert disk_source(lab.virsh("host2", "dumpxml", "sn1").stdout) == new_path
    assert disk_source(lab.virsh("host2", "dumpxml", "--inactive", "sn1").stdout) == new_path
    assert "sn1-vda.qcow2" in lab.volumes("host2", "local")
    assert "sn1-disk0.qcow2" not in lab.volumes("host1", "local")  # source freed
    client = FerryClient()
    job = client.get_job(client.list_jobs(limit=1)[0].id)
    assert (job.kind, job.state) == ("migrate-with-storage", "succeeded")
    report = report_of(job, LiveReport)
    assert report.disks["vda"].target == new_path
    assert report.heartbeat_lost == 0
    wait_until(lambda: collector.disk_acked("sn1") > acked_before + 100, 60,
               "disk writes after the move")
    vm = client.get_vm("sn1")
    assert vm.lab_address
    verdict = collector.request_verify("sn1", vm.lab_address)
    assert verdict.ok and verdict.corrupt == 0 and verdict.stale == 0, verdict
    assert verdict.max_seq >= acked_before


@pytest.fixture
def slow_disk_vm(lab: LabEnv, make_vm: Callable[..., None]) -> Iterator[str]:
    """A running VM on host1's local datastore whose disk holds 192 MiB of data, behind a
    slow link, so its copy to another host takes half a minute."""
    make_vm("sn2", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "256", "--workload", "heartbeat,disk", "--no-start")
    fill_disk(local_datastore_dir("host1") / "sn2-disk0.qcow2", "qcow2", 64, 192)
    assert lab.ferry("vm", "start", "sn2").code == 0
    assert lab.collector.wait_for_heartbeat("sn2", 60)
    set_link("host1", "50mbit")
    try:
        yield "sn2"
    finally:
        set_link("host1", None)


def _start_and_wait_for_disk_copy(lab: LabEnv, vm: str) -> str:
    client = FerryClient()
    job = client.migrate(vm, "host2", "local", "thin")

    def copying() -> bool:
        now = client.get_job(job.id)
        assert now.state == "running", f"job ended before the test acted: {now.error}"
        return (progress_of(now, LiveProgress).disk_processed or 0) > 8 * 2**20

    wait_until(copying, 60, "the disk copy to start")
    return job.id


def _assert_whole_on_host1(lab: LabEnv, vm: str, job: JobOut, heartbeat_within: float) -> None:
    assert lab.domains("host1").get(vm) == "running"
    assert vm not in lab.domains("host2")
    source = f"/var/lib/ferry-local/{vm}-disk0.qcow2"
    assert disk_source(lab.virsh("host1", "dumpxml", vm).stdout) == source
    assert f"{vm}-disk0.qcow2" in lab.volumes("host1", "local")
    assert f"{vm}-vda.qcow2" not in lab.volumes("host2", "local")  # partial copy removed
    back_ms = heartbeat_back_ms(lab, vm, job.finished_at, within=heartbeat_within)
    print(f"{vm}: heartbeat back {back_ms} ms after the job's end; "
          f"guest check: {report_of(job, LiveReport).guest_after_rollback}")
    assert back_ms is not None, (
        f"no heartbeat from {vm} within {heartbeat_within:g} s of the job's end")
    address = FerryClient().get_vm(vm).lab_address
    assert address
    verdict = lab.collector.request_verify(vm, address)
    assert verdict.ok and verdict.corrupt == 0 and verdict.stale == 0, verdict


def test_cancel_during_disk_copy_keeps_vm_on_its_source_disks(
    lab: LabEnv, slow_disk_vm: str
) -> None:
    job_id = _start_and_wait_for_disk_copy(lab, slow_disk_vm)
    client = FerryClient()
    client.cancel_job(job_id)
    wait_until(lambda: client.get_job(job_id).state in ("cancelled", "failed", "succeeded"),
               90, "the cancel to finish")
    job = client.get_job(job_id)
    assert job.state == "cancelled", job.error
    _assert_whole_on_host1(lab, slow_disk_vm, job, heartbeat_within=2.0)


def test_destination_libvirtd_crash_during_copy_leaves_vm_whole(
    lab: LabEnv, slow_disk_vm: str
) -> None:
    job_id = _start_and_wait_for_disk_copy(lab, slow_disk_vm)
    client = FerryClient()
    crash_libvirtd("host2")
    try:
        wait_until(lambda: "None" in lab.virsh("host1", "domjobinfo", slow_disk_vm).stdout,
                   120, "host1 to give up the migration")
    finally:
        restart_libvirtd("host2")  # as its supervisor would
    wait_until(lambda: client.get_job(job_id).state in ("cancelled", "failed", "succeeded"),
               120, "the rollback to finish")
    job = client.get_job(job_id)
    assert job.state == "failed", job.error
    assert job.error and "host2" in job.error
    # The destination's libvirtd, back, removed the half-migrated guest; ferry the files.
    wait_until(lambda: slow_disk_vm not in lab.domains("host2"), 60,
               "host2 to drop the unfinished incoming VM")
    _assert_whole_on_host1(lab, slow_disk_vm, job, heartbeat_within=60.0)


@pytest.fixture
def tiny_datastore(lab: LabEnv) -> Iterator[str]:
    """Datastore ``tiny`` on host2: a 400 MiB ext4 filesystem on a loop device."""
    image = LAB_ROOT / "tiny-datastore.img"
    folder = "/var/lib/ferry-tiny"
    subprocess.run(["truncate", "-s", "400M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    Path(folder).mkdir(exist_ok=True)
    host_exec("host2", ["mount", "-o", "loop", str(image), folder])
    try:
        lab.virsh("host2", "pool-create-as", "tiny", "dir", "--target", folder)
        assert lab.ferry("refresh").code == 0
        yield folder
    finally:
        lab.virsh("host2", "pool-destroy", "tiny", check=False)
        host_exec("host2", ["umount", folder], check=False)
        image.unlink(missing_ok=True)
        lab.ferry("refresh")


def test_target_datastore_filling_up_mid_copy_leaves_vm_whole(
    lab: LabEnv, slow_disk_vm: str, tiny_datastore: str
) -> None:
    client = FerryClient()
    job = client.migrate(slow_disk_vm, "host2", "tiny", "thin")
    wait_until(lambda: (progress_of(client.get_job(job.id), LiveProgress).disk_processed
                        or 0) > 8 * 2**20, 60, "the disk copy to start")
    # Another tenant's file takes every free byte of the datastore.
    host_exec("host2", ["dd", "if=/dev/zero", f"of={tiny_datastore}/filler", "bs=1M"],
              check=False)
    wait_until(lambda: client.get_job(job.id).state in ("cancelled", "failed", "succeeded"),
               180, "the move to fail")
    done = client.get_job(job.id)
    assert done.state == "failed", done.error
    assert done.error and "host2" in done.error
    assert f"{slow_disk_vm}-vda.qcow2" not in lab.volumes("host2", "tiny")
    _assert_whole_on_host1(lab, slow_disk_vm, done, heartbeat_within=60.0)

"""Cold migration in the lab: a powered-off VM's files copied or converted, verified, and
its registration moved; the guest then boots from the new files."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, disk_source, fill_disk, progress_of, wait_until

from ferry.cli.client import FerryClient
from ferry.lab.lab import local_datastore_dir, set_link
from ferry.lab.layout import LAB_ROOT
from ferry.reports import CopyProgress

pytestmark = pytest.mark.lab

SHARED = LAB_ROOT / "datastores" / "shared"


def qemu_img_compare(a: Path, a_fmt: str, b: Path, b_fmt: str) -> subprocess.CompletedProcess[str]:
    """Guest-visible content of two images: exit 0 when identical."""
    return subprocess.run(["qemu-img", "compare", "-f", a_fmt, "-F", b_fmt, str(a), str(b)],
                          capture_output=True, text=True, timeout=300)


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def boots_with_heartbeat(lab: LabEnv, vm: str) -> bool:
    assert lab.ferry("vm", "start", vm).code == 0
    return lab.collector.wait_for_heartbeat(vm, 60)


def test_registration_moves_when_the_disk_is_on_a_shared_datastore(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("cd1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--workload", "heartbeat", "--no-start")
    path = "/var/lib/ferry-lab/datastores/shared/cd1-disk0.qcow2"
    # Without --cold a powered-off VM is refused, the remedy naming --cold.
    refused = lab.ferry("migrate", "cd1", "--host", "host2")
    assert refused.code == 4 and "--cold" in refused.err, refused.err

    result = lab.ferry("migrate", "cd1", "--host", "host2", "--cold")

    assert result.code == 0, result.err
    assert lab.domains("host2").get("cd1") == "shut off"
    assert "cd1" not in lab.domains("host1")
    assert disk_source(lab.virsh("host2", "dumpxml", "--inactive", "cd1").stdout) == path
    assert "cd1-disk0.qcow2" in lab.volumes("host1", "shared")  # the one file, untouched
    assert boots_with_heartbeat(lab, "cd1")


def test_host_and_datastore_with_conversion_to_thick_eager_keeps_the_guest_data(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    make_vm("cd2", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "128", "--workload", "heartbeat", "--no-start")
    source = local_datastore_dir("host1") / "cd2-disk0.qcow2"
    fill_disk(source, "qcow2", 64, 32)
    before = tmp_path / "before.qcow2"
    shutil.copyfile(source, before)  # the source is deleted by the move

    result = lab.ferry("migrate", "cd2", "--host", "host2", "--datastore", "local",
                       "--format", "thick-eager", "--cold", "--json")

    assert result.code == 0, result.err
    job = json.loads(result.out)
    assert job["kind"] == "cold-migrate" and job["state"] == "succeeded"
    assert job["report"]["verified_sha256"]["vda"]  # the streamed copy was read back
    target = local_datastore_dir("host2") / "cd2-vda.img"
    assert lab.domains("host2").get("cd2") == "shut off" and "cd2" not in lab.domains("host1")
    assert disk_source(lab.virsh("host2", "dumpxml", "--inactive", "cd2").stdout) == \
        "/var/lib/ferry-local/cd2-vda.img"
    assert "cd2-disk0.qcow2" not in lab.volumes("host1", "local")
    assert not [v for v in lab.volumes("host1", "local") if "staging" in v]
    compared = qemu_img_compare(before, "qcow2", target, "raw")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    # Eagerly zeroed: every byte of the raw file is allocated.
    assert allocated(target) >= 128 * 2**20
    assert boots_with_heartbeat(lab, "cd2")


@pytest.mark.parametrize("dest", ["host1", "host2"])
def test_conversion_to_thin_skips_zeros(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path, dest: str
) -> None:
    # On one host libvirt converts directly; to another host a verified raw staging copy
    # crosses first and is converted there.
    vm = f"cd3{dest[-1]}"
    make_vm(vm, "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "256", "--disk-format", "raw", "--workload", "heartbeat", "--no-start")
    source = SHARED / f"{vm}-disk0.raw"
    fill_disk(source, "raw", 64, 16)
    before = tmp_path / "before.raw"
    shutil.copyfile(source, before)
    where = ["--datastore", "local"] + (["--host", dest] if dest != "host1" else [])

    result = lab.ferry("migrate", vm, *where, "--format", "thin", "--cold")

    assert result.code == 0, result.err
    target = local_datastore_dir(dest) / f"{vm}-vda.qcow2"
    assert disk_source(lab.virsh(dest, "dumpxml", "--inactive", vm).stdout) == \
        f"/var/lib/ferry-local/{vm}-vda.qcow2"
    assert not source.exists()
    assert not [v for v in lab.volumes(dest, "local") if "staging" in v]
    compared = qemu_img_compare(before, "raw", target, "qcow2")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    # 16 MiB of data in a 256 MiB disk: the zeros were not written.
    assert allocated(target) < 24 * 2**20
    job = FerryClient().list_jobs(limit=1)[0]
    assert (job.kind, job.state) == ("cold-migrate", "succeeded")
    assert boots_with_heartbeat(lab, vm)


def test_cancel_mid_copy_leaves_the_vm_where_it_was(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("cd4", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "256", "--workload", "heartbeat", "--no-start")
    fill_disk(local_datastore_dir("host1") / "cd4-disk0.qcow2", "qcow2", 64, 192)
    client = FerryClient()
    set_link("host1", "50mbit")  # the file crosses host1's link: half a minute
    try:
        job = client.migrate("cd4", "host2", "local", cold=True)

        def copying() -> bool:
            now = client.get_job(job.id)
            assert now.state == "running", f"job ended before the test acted: {now.error}"
            vda = progress_of(now, CopyProgress).disks.get("vda")
            return vda is not None and vda.copied > 8 * 2**20

        wait_until(copying, 60, "the copy to start")
        client.cancel_job(job.id)
        wait_until(lambda: client.get_job(job.id).state in ("cancelled", "failed", "succeeded"),
                   90, "the cancel")
    finally:
        set_link("host1", None)
    done = client.get_job(job.id)
    assert done.state == "cancelled", done.error
    assert lab.domains("host1").get("cd4") == "shut off" and "cd4" not in lab.domains("host2")
    assert disk_source(lab.virsh("host1", "dumpxml", "--inactive", "cd4").stdout) == \
        "/var/lib/ferry-local/cd4-disk0.qcow2"
    assert "cd4-disk0.qcow2" in lab.volumes("host1", "local")
    assert not [v for v in lab.volumes("host2", "local") if v.startswith("cd4")]
    assert boots_with_heartbeat(lab, "cd4")


def test_host_and_datastore_keeping_the_format_streams_and_verifies_the_file(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    make_vm("cd5", "--host", "host1", "--datastore", "local", "--memory", "128",
            "--disk", "128", "--workload", "heartbeat", "--no-start")
    source = local_datastore_dir("host1") / "cd5-disk0.qcow2"
    fill_disk(source, "qcow2", 64, 16)
    before = tmp_path / "before.qcow2"
    shutil.copyfile(source, before)

    result = lab.ferry("migrate", "cd5", "--host", "host2", "--datastore", "local", "--cold",
                       "--json")

    assert result.code == 0, result.err
    job = json.loads(result.out)
    assert job["report"]["verified_sha256"]["vda"]
    target = local_datastore_dir("host2") / "cd5-vda.qcow2"
    assert disk_source(lab.virsh("host2", "dumpxml", "--inactive", "cd5").stdout) == \
        "/var/lib/ferry-local/cd5-vda.qcow2"
    assert "cd5" not in lab.domains("host1")
    assert "cd5-disk0.qcow2" not in lab.volumes("host1", "local")
    # The file crossed as it was: same bytes, and its holes stayed holes.
    assert target.read_bytes() == before.read_bytes()
    assert target.stat().st_blocks * 512 < 24 * 2**20
    assert boots_with_heartbeat(lab, "cd5")

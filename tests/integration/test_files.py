"""Every file a VM reads, and every file behind it, in the lab: backing files read from the
images themselves, files outside the datastores refused for every move that would read
them, and images read in the format their definition declares, never in a guessed one.

The VMs here are changed behind ferry's back, with qemu-img, as an admin's tools would.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, disk_source, holding

from ferry.lab.lab import local_datastore_dir
from ferry.lab.layout import SHARED_DATASTORE_DIR as SHARED

pytestmark = pytest.mark.lab

def rebase(image: Path, backing: str, backing_format: str) -> None:
    """Point an image's header at a backing file, as 'qemu-img rebase -u' does."""
    subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", backing,
                    "-F", backing_format, str(image)], check=True, capture_output=True,
                   timeout=60)


def test_cold_move_of_an_image_backed_by_a_host_file_is_refused_and_copies_nothing(
    lab: LabEnv, make_vm: Callable[..., None], host_file: tuple[Path, bytes]
) -> None:
    path, marker = host_file
    make_vm("bk1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--workload", "heartbeat", "--no-start")
    disk = SHARED / "bk1-disk0.qcow2"
    rebase(disk, str(path), "raw")  # the saved definition still names no backing file
    assert "backingStore" not in lab.virsh("host1", "dumpxml", "--inactive", "bk1").stdout
    assert lab.ferry("refresh").code == 0
    before = lab.snapshot()

    for where in (("--datastore", "local", "--format", "thick-lazy"),
                  ("--datastore", "local"),
                  ("--host", "host2"),
                  ("--host", "host2", "--datastore", "local", "--format", "thin")):
        checked = lab.ferry("check", "bk1", "--cold", *where)
        moved = lab.ferry("migrate", "bk1", "--cold", *where)

        for result in (checked, moved):
            assert result.code == 4, (where, result.out, result.err)
            text = result.out + result.err
            assert "storage.chain-outside" in text and str(path) in text, (where, text)
            assert "vda" in text, (where, text)
    assert lab.snapshot() == before
    assert lab.domains("host1").get("bk1") == "shut off"
    assert holding(lab, marker) == []


def test_backing_file_on_a_host_private_path_is_refused_for_a_host_move(
    lab: LabEnv, make_vm: Callable[..., None]
) -> None:
    make_vm("bk2", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--workload", "heartbeat", "--no-start")
    # The base image sits in host1's own datastore, which host2 does not see.
    base = local_datastore_dir("host1") / "bk2-base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True,
                   timeout=60)
    try:
        seen_path = "/var/lib/ferry-local/bk2-base.qcow2"  # as host1 sees it
        rebase(SHARED / "bk2-disk0.qcow2", seen_path, "qcow2")
        assert lab.ferry("vm", "start", "bk2").code == 0
        assert lab.collector.wait_for_heartbeat("bk2", 60)

        checked = lab.ferry("check", "bk2", "--host", "host2")
        moved = lab.ferry("migrate", "bk2", "--host", "host2")

        for result in (checked, moved):
            assert result.code == 4, (result.out, result.err)
            text = result.out + result.err
            assert "storage.not-shared" in text and seen_path in text, text
        assert lab.domains("host1").get("bk2") == "running"
        assert "bk2" not in lab.domains("host2")
        assert lab.collector.wait_for_heartbeat("bk2", 10, after=time.monotonic())
    finally:
        lab.ferry("vm", "stop", "bk2", "--force")
        lab.ferry("vm", "delete", "bk2")
        base.unlink(missing_ok=True)


def test_a_raw_disk_is_read_as_raw_whatever_its_bytes_look_like(
    lab: LabEnv, make_vm: Callable[..., None], host_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, marker = host_file
    make_vm("fmt1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--disk-format", "raw", "--workload", "heartbeat", "--no-start")
    disk = SHARED / "fmt1-disk0.raw"
    assert disk.exists()
    # The guest owns its raw disk's bytes: here they begin with a qcow2 header whose
    # backing file is the host file, as a guest could write them.
    lure = tmp_path / "lure.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(path), "-F", "raw",
                    str(lure), "16M"], check=True, timeout=60)
    header = lure.read_bytes()[:65536]
    with disk.open("r+b") as handle:
        handle.write(header)
    digest = hashlib.sha256(disk.read_bytes()).hexdigest()
    assert lab.ferry("refresh").code == 0
    before = lab.snapshot()

    converted = lab.ferry("migrate", "fmt1", "--cold", "--datastore", "local",
                          "--format", "thin")

    assert converted.code == 4, (converted.out, converted.err)
    assert "storage.format-mismatch" in converted.err and "vda" in converted.err
    assert lab.snapshot() == before
    assert holding(lab, marker) == []

    copied = lab.ferry("migrate", "fmt1", "--cold", "--host", "host2", "--datastore", "local",
                       "--format", "same")

    assert copied.code == 0, copied.err
    target = disk_source(lab.virsh("host2", "dumpxml", "--inactive", "fmt1").stdout)
    assert target is not None and target.startswith("/var/lib/ferry-local/")
    on_disk = local_datastore_dir("host2") / Path(target).name
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == digest  # byte for byte
    assert "fmt1" not in lab.domains("host1")
    assert holding(lab, marker) == []

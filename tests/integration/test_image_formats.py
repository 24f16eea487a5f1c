"""Images read as their declared format, in the lab: a running VM's raw disk whose first
bytes are a qcow2 header naming a host file as its backing file (as its guest could write
them) is checked and moved live, storage and host, and everywhere it stays the raw bytes it
is: the report names no backing file, each copy holds the header as data, and nothing of the
host file reaches a datastore.

libvirt's storage guesses that disk to be qcow2 with a backing file (a pool refresh reads
every file's header); that guess is what ferry must not act on.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv, disk_source, holding, report_of

from ferry.cli.client import FerryClient
from ferry.lab.lab import local_datastore_dir
from ferry.lab.layout import SHARED_DATASTORE_DIR as SHARED
from ferry.reports import LiveReport

pytestmark = pytest.mark.lab

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def what_libvirt_guesses(lab: LabEnv, host: str, pool: str, volume: str) -> str:
    lab.virsh(host, "pool-refresh", pool)
    return lab.virsh(host, "vol-dumpxml", "--pool", pool, volume).stdout


def disk_declared(xml: str) -> tuple[str | None, list[str]]:
    """(driver type, every backing file) of disk vda of a domain XML."""
    for disk in ET.fromstring(xml).findall("devices/disk"):
        target = disk.find("target")
        if target is not None and target.get("dev") == "vda":
            driver = disk.find("driver")
            files = [s.get("file", "") for s in disk.findall(".//backingStore/source")]
            return (driver.get("type") if driver is not None else None), files
    return None, []


def test_a_raw_disk_spelling_a_qcow2_header_moves_as_the_bytes_it_is(
    lab: LabEnv, make_vm: Callable[..., None], host_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, marker = host_file
    make_vm("imf1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "16", "--disk-format", "raw", "--workload", "heartbeat", "--no-start")
    disk = SHARED / "imf1-disk0.raw"
    lure = tmp_path / "lure.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(path), "-F", "raw",
                    str(lure), "16M"], check=True, timeout=60)
    with disk.open("r+b") as handle:
        handle.write(lure.read_bytes()[:65536])
    original = tmp_path / "original.raw"
    original.write_bytes(disk.read_bytes())
    # libvirt's storage guesses the file to be a qcow2 image backed by the host file.
    guessed = what_libvirt_guesses(lab, "host1", "shared", "imf1-disk0.raw")
    assert "<format type='qcow2'/>" in guessed and str(path) in guessed, guessed
    assert lab.ferry("vm", "start", "imf1").code == 0
    assert lab.collector.wait_for_heartbeat("imf1", 60)
    assert lab.ferry("refresh").code == 0

    # The pre-flight reads the disk as raw: no backing file, no chain row, for any move.
    for where in (("--datastore", "local", "--format", "thin"),
                  ("--host", "host2", "--datastore", "local")):
        checked = lab.ferry("check", "imf1", *where, "--json")
        assert str(path) not in checked.out + checked.err, (where, checked.out)
        report = json.loads(checked.out)
        assert checked.code == 0 and report["allowed"], (where, checked.out)
        assert not [r for r in report["findings"] if "backing_file" in r["objects"]], where

    # Storage move on host1, converted to qcow2: QEMU mirrors the disk as the guest sees it.
    moved = lab.ferry("migrate", "imf1", "--datastore", "local", "--format", "thin")

    assert moved.code == 0, moved.err
    thin = local_datastore_dir("host1") / "imf1-vda.qcow2"
    live = lab.virsh("host1", "dumpxml", "imf1").stdout
    assert disk_source(live) == "/var/lib/ferry-local/imf1-vda.qcow2"
    assert disk_declared(live) == ("qcow2", [])
    assert disk_declared(lab.virsh("host1", "dumpxml", "--inactive", "imf1").stdout)[0] == \
        "qcow2"
    compared = subprocess.run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2",
                               str(original), str(thin)], capture_output=True, text=True,
                              timeout=120)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", str(thin)],
        capture_output=True, text=True, check=True, timeout=60).stdout)
    assert "backing-filename" not in info  # ferry's own qcow2 container has nothing behind

    # Host and storage together, to a raw file: the NBD copy carries the same bytes.
    moved = lab.ferry("migrate", "imf1", "--host", "host2", "--datastore", "local",
                      "--format", "thick-lazy")

    assert moved.code == 0, moved.err
    assert lab.domains("host2").get("imf1") == "running" and "imf1" not in lab.domains("host1")
    live = lab.virsh("host2", "dumpxml", "imf1").stdout
    assert disk_source(live) == "/var/lib/ferry-local/imf1-vda.img"
    assert disk_declared(live) == ("raw", [])
    thick = local_datastore_dir("host2") / "imf1-vda.img"
    assert sha256(thick) == sha256(original)  # byte for byte: the header is data
    # Reserved as the raw file it is declared, whatever libvirt's storage guesses it to be.
    client = FerryClient()
    job = client.get_job(client.list_jobs(limit=1)[0].id)
    assert (job.kind, job.state) == ("migrate-with-storage", "succeeded"), job.error
    assert report_of(job, LiveReport).cleanup_error is None
    assert thick.stat().st_blocks * 512 >= 16 * 2**20
    assert lab.collector.wait_for_heartbeat("imf1", 30)
    assert holding(lab, marker) == []

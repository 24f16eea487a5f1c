"""A kernel on a local datastore: the host move is refused, and following the remedy works.

The remedy no longer proposes a storage migration (which moves disks only):
copy the kernel to a shared datastore, point the definition at the copy, and
start the VM again, since a running VM keeps the path it started with.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv

from ferry.lab.layout import GUEST_KERNEL_VOLUME

pytestmark = pytest.mark.lab


def copy_volume(lab: LabEnv, host: str, source: tuple[str, str], target: tuple[str, str],
                tmp: Path) -> str:
    """Copy a file between datastores as an admin would (virsh vol-download, vol-upload)."""
    local = tmp / f"{target[0]}-{target[1]}"
    lab.virsh(host, "vol-download", "--pool", source[0], source[1], str(local))
    lab.virsh(host, "vol-create-as", target[0], target[1], str(local.stat().st_size),
              "--format", "raw")
    lab.virsh(host, "vol-upload", "--pool", target[0], target[1], str(local))
    return lab.virsh(host, "vol-path", "--pool", target[0], target[1]).stdout.strip()


def point_kernel_at(lab: LabEnv, host: str, vm: str, kernel: str, tmp: Path) -> None:
    """What 'virsh edit VM', element <kernel>, does."""
    root = ET.fromstring(lab.virsh(host, "dumpxml", "--inactive", vm).stdout)
    element = root.find("os/kernel")
    assert element is not None
    element.text = kernel
    path = tmp / f"{vm}.xml"
    path.write_text(ET.tostring(root, encoding="unicode"))
    lab.virsh(host, "define", str(path))


def restart(lab: LabEnv, host: str, vm: str) -> None:
    lab.virsh(host, "destroy", vm)
    lab.virsh(host, "start", vm)
    assert lab.ferry("refresh").code == 0


def not_shared(lab: LabEnv, vm: str, dest: str) -> tuple[int, dict[str, str]]:
    """The exit code of 'ferry check', and the remedy of each storage.not-shared file."""
    result = lab.ferry("check", vm, "--host", dest, "--json")
    assert result.code in (0, 4), result.err
    rows = json.loads(result.out)["findings"]
    return result.code, {str(r["objects"]["file"]): str(r["remedy"]) for r in rows
                         if r["code"] == "storage.not-shared"}


def test_kernel_on_local_datastore_is_copied_pointed_at_and_restarted(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    make_vm("kern1", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "heartbeat")
    try:
        local = copy_volume(lab, "host1", ("shared", GUEST_KERNEL_VOLUME),
                            ("local", "kern1-vmlinuz"), tmp_path)
        point_kernel_at(lab, "host1", "kern1", local, tmp_path)
        restart(lab, "host1", "kern1")
        code, remedies = not_shared(lab, "kern1", "host2")
        assert code == 4 and set(remedies) == {local}
        assert "copy the kernel file" in remedies[local]
        assert "Storage VMotion" not in remedies[local]

        # The remedy, step by step: a copy on the shared datastore, the definition at it...
        shared = copy_volume(lab, "host1", ("local", "kern1-vmlinuz"),
                             ("shared", "kern1-vmlinuz"), tmp_path)
        point_kernel_at(lab, "host1", "kern1", shared, tmp_path)
        assert lab.ferry("refresh").code == 0
        # ...which the running VM takes only at its next start: still refused now.
        assert not_shared(lab, "kern1", "host2") == (4, remedies)
        restart(lab, "host1", "kern1")
        assert not_shared(lab, "kern1", "host2") == (0, {})
        result = lab.ferry("migrate", "kern1", "--host", "host2")
        assert result.code == 0, result.err
        assert lab.domains("host2").get("kern1") == "running"
    finally:
        lab.virsh("host1", "vol-delete", "--pool", "local", "kern1-vmlinuz", check=False)
        lab.virsh("host1", "vol-delete", "--pool", "shared", "kern1-vmlinuz", check=False)

"""`ferry vm create` on a network its host lacks: refused before anything is made there.

libvirt itself defines a domain whose network does not exist and fails only
when it starts; this shows both, with plain virsh as the witness.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv

pytestmark = pytest.mark.lab


def test_vm_create_refuses_a_missing_network_and_changes_nothing(
    lab: LabEnv, make_vm: Callable[..., None], tmp_path: Path
) -> None:
    before = lab.snapshot()
    for start in ([], ["--no-start"]):
        result = lab.ferry("vm", "create", "nonet1", "--host", "host1", "--datastore", "shared",
                           "--memory", "128", "--disk", "16", "--workload", "none",
                           "--network", "Nope", *start)
        assert result.code == 2, result.err
        assert "host host1 has no network named 'Nope'" in result.err
        assert "Production" in result.err  # the host's networks are listed
    assert lab.snapshot() == before  # no volume, no domain, on any host

    # Why ferry asks first: libvirt defines such a domain and refuses only at start.
    make_vm("nonet2", "--host", "host1", "--datastore", "shared", "--memory", "128",
            "--disk", "0", "--workload", "none", "--no-start")
    root = ET.fromstring(lab.virsh("host1", "dumpxml", "--inactive", "nonet2").stdout)
    name, uuid = root.find("name"), root.find("uuid")
    assert name is not None and uuid is not None
    name.text = "nonet3"
    root.remove(uuid)
    for source in root.iter("source"):
        if source.get("network"):
            source.set("network", "Nope")
    for iface in root.iter("interface"):
        for mac in iface.findall("mac"):
            iface.remove(mac)
    path = tmp_path / "nonet3.xml"
    path.write_text(ET.tostring(root, encoding="unicode"))
    lab.virsh("host1", "define", str(path))
    try:
        started = lab.virsh("host1", "start", "nonet3", check=False)
        assert started.returncode != 0 and "Nope" in started.stderr
    finally:
        lab.virsh("host1", "undefine", "nonet3", check=False)

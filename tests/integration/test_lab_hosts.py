"""Two lab hosts: TLS-only libvirtds with private datastores that can live-migrate.

Needs root, libvirtd and QEMU; brings the lab up once for the module and
always tears it down, then checks nothing the lab started is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry import config
from ferry.lab import layout
from ferry.lab.lab import LabState, client_uri, host_exec, lab_down, lab_up, load_state

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("libvirtd") is None,
        reason="the lab needs root and libvirtd",
    ),
]


def virsh(uri: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-q", "-c", uri, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def lab_libvirtd_pids() -> list[int]:
    """libvirtd processes whose pid file lives under the lab's root."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "libvirtd" in args and str(layout.LAB_ROOT) in args:
            pids.append(int(pid))
    return pids


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    try:
        yield lab_up(hosts=2, guest=False)
    finally:
        lab_down()
    assert lab_libvirtd_pids() == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "ferry-host" not in netns
    for bridge in (layout.MIGRATION_BRIDGE, layout.PRODUCTION_ROOT_BRIDGE):
        gone = subprocess.run(["ip", "link", "show", bridge], capture_output=True)
        assert gone.returncode != 0, f"{bridge} still exists"
    assert load_state() is None


def test_state_is_recorded(lab: LabState) -> None:
    state = load_state()
    assert state is not None
    assert [h.name for h in state.hosts] == ["host1", "host2"]
    assert all(h.libvirtd_pid for h in state.hosts)
    assert lab.healthy


def test_up_is_idempotent(lab: LabState) -> None:
    again = lab_up(hosts=2, guest=False)
    assert [h.libvirtd_pid for h in again.hosts] == [h.libvirtd_pid for h in lab.hosts]


def test_tls_with_client_pki_only(lab: LabState, tmp_path: Path) -> None:
    for host in lab.hosts:
        assert virsh(client_uri(host.uri), "uri").stdout.strip().startswith(host.uri)
        # Trusts the server but brings no client certificate: refused by the server.
        shutil.copy(config.pki_dir() / "cacert.pem", tmp_path / "cacert.pem")
        refused = virsh(f"{host.uri}?pkipath={tmp_path}", "uri", check=False)
        assert refused.returncode != 0
        # Same at the TLS level: the server drops a connection without a certificate.
        ctx = ssl.create_default_context(cafile=str(config.pki_dir() / "cacert.pem"))
        with socket.create_connection((host.migration_address, 16514), timeout=10) as raw:
            try:
                with ctx.wrap_socket(raw, server_hostname=host.migration_address) as conn:
                    conn.sendall(b"\0\0\0\x1c" + b"\0" * 24)
                    assert conn.recv(100) == b""
            except (ssl.SSLError, ConnectionError):
                pass
        # And plain TCP is not offered at all.
        tcp = virsh(f"qemu+tcp://{host.migration_address}/system", "uri", check=False)
        assert tcp.returncode != 0


def test_pools_and_networks(lab: LabState) -> None:
    for host in lab.hosts:
        uri = client_uri(host.uri)
        pools = virsh(uri, "pool-list", "--name").stdout.split()
        assert sorted(pools) == sorted([layout.SHARED_POOL, layout.LOCAL_POOL])
        nets = virsh(uri, "net-list", "--name").stdout.split()
        expected = [layout.PRODUCTION_NETWORK]
        if host is lab.hosts[-1]:
            expected.append(layout.ISOLATED_NETWORK)
        assert sorted(nets) == sorted(expected)
        xml = virsh(uri, "net-dumpxml", layout.PRODUCTION_NETWORK).stdout
        assert "<forward mode='bridge'/>" in xml
        assert f"<bridge name='{layout.PRODUCTION_HOST_BRIDGE}'/>" in xml
    isolated = virsh(client_uri(lab.hosts[-1].uri), "net-dumpxml", layout.ISOLATED_NETWORK).stdout
    assert "<forward" not in isolated and "<ip" not in isolated


def test_local_datastore_is_private_shared_is_shared(lab: LabState) -> None:
    token = uuid.uuid4().hex
    local = layout.LOCAL_DATASTORE_MOUNTPOINT / f"local-{token}"
    shared = layout.SHARED_DATASTORE_DIR / f"shared-{token}"
    host_exec("host1", ["sh", "-c", f"echo x > {local} && echo y > {shared}"])
    assert host_exec("host1", ["test", "-e", str(local)], check=False).returncode == 0
    assert host_exec("host2", ["test", "-e", str(local)], check=False).returncode != 0
    assert host_exec("host2", ["test", "-e", str(shared)], check=False).returncode == 0
    # libvirt sees the same: a refreshed local pool on host2 lacks the file.
    uri2 = client_uri(lab.hosts[1].uri)
    virsh(uri2, "pool-refresh", layout.LOCAL_POOL)
    virsh(uri2, "pool-refresh", layout.SHARED_POOL)
    assert local.name not in virsh(uri2, "vol-list", layout.LOCAL_POOL).stdout
    assert shared.name in virsh(uri2, "vol-list", layout.SHARED_POOL).stdout


def test_hosts_have_distinct_uuids(lab: LabState) -> None:
    uuids = []
    for host in lab.hosts:
        caps = virsh(client_uri(host.uri), "capabilities").stdout
        match = re.search(r"<host>\s*<uuid>([0-9a-f-]+)</uuid>", caps)
        assert match, caps[:500]
        uuids.append(match.group(1))
    assert len(set(uuids)) == len(uuids)


DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""


def test_live_migration_between_hosts(lab: LabState, tmp_path: Path) -> None:
    name = f"lab-mig-{uuid.uuid4().hex[:6]}"
    src, dst = (client_uri(h.uri) for h in lab.hosts)
    xml = tmp_path / "dom.xml"
    xml.write_text(DOMAIN_XML.format(name=name))
    virsh(src, "define", str(xml))
    virsh(src, "start", name)
    try:
        assert name in virsh(src, "list", "--name").stdout.split()
        started = time.monotonic()
        migrate = virsh(
            src,
            "migrate",
            "--live",
            "--p2p",
            "--persistent",
            "--undefinesource",
            name,
            f"qemu+tls://{lab.hosts[1].migration_address}/system",
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        assert time.monotonic() - started < 120
        assert name in virsh(dst, "list", "--name").stdout.split()
        assert virsh(dst, "domstate", name).stdout.strip() == "running"
        assert name not in virsh(src, "list", "--all", "--name").stdout.split()
    finally:
        for uri in (src, dst):
            virsh(uri, "destroy", name, check=False)
            virsh(uri, "undefine", name, check=False)

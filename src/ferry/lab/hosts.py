"""One lab host: a network namespace, a mount namespace, and its own libvirtd.

All hosts share one kernel, so everything that would make two libvirtds step
on each other is either made private (bind mounts over libvirt's folders,
its own /etc/pki) or switched off (cgroups, namespaces, security drivers).
Everything here is idempotent or tolerant of half-built state, because
``lab down`` must clean up after any ``lab up`` that died midway.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ferry import config
from ferry.errors import LabError
from ferry.lab import layout, tls
from ferry.lab.layout import LabHostLayout
from ferry.lab.shell import ok, run

# Private folder (under the host's root_dir) -> where libvirtd sees it.
PRIVATE_MOUNTS: dict[str, str] = {
    "etc-libvirt": "/etc/libvirt",
    "run-libvirt": "/run/libvirt",
    "lib-libvirt": "/var/lib/libvirt",
    "log-libvirt": "/var/log/libvirt",
    "cache-libvirt": "/var/cache/libvirt",
    "etc-pki": "/etc/pki",
}
READY_TIMEOUT = 90.0
_HOST_NAME = re.compile(r"^host(\d+)$")


def host_layout(host_name: str) -> LabHostLayout:
    match = _HOST_NAME.match(host_name)
    if not match:
        raise LabError(f"not a lab host name: {host_name!r} (expected host1, host2, ...)")
    return LabHostLayout(int(match.group(1)))


def pid_file(host: LabHostLayout) -> Path:
    return host.root_dir / "libvirtd.pid"


def log_file(host: LabHostLayout) -> Path:
    return host.root_dir / "libvirtd.out"


def client_uri(uri: str) -> str:
    """``uri`` with the control plane's client PKI, as virsh needs it for TLS."""
    sep = "&" if "?" in uri else "?"
    return f"{uri}{sep}pkipath={config.pki_dir()}"


def virsh(
    host: LabHostLayout, *args: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return run(["virsh", "-q", "-c", client_uri(host.uri), *args], check=check, timeout=timeout)


# --- processes -------------------------------------------------------------


def pid_alive(pid: int | None, comm: str | None = None) -> bool:
    """Running (not a zombie) and, if given, named ``comm`` (guards pid reuse)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        return False
    return comm is None or name == comm


def libvirtd_pid(host: LabHostLayout) -> int | None:
    try:
        pid = int(pid_file(host).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid, "libvirtd") else None


def host_exec(
    host_name: str, argv: list[str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside host ``host_name``: its network and mount namespaces.

    Entering libvirtd's own namespaces (rather than ``ip netns exec``) is what
    makes the host's private folders, e.g. its local datastore, visible.
    """
    host = host_layout(host_name)
    pid = libvirtd_pid(host)
    if pid is None:
        raise LabError(f"{host_name}: its libvirtd is not running")
    return run(["nsenter", "-t", str(pid), "-m", "-n", "--", *argv], check=check)


def _reap(pid: int) -> None:
    # libvirtd may be our own child (lab up ran in this process); reap it so a
    # zombie does not linger and look alive.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def kill_pid(pid: int, grace: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> None:
    """``sig`` (SIGTERM), then SIGKILL after ``grace`` seconds."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.1)


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def processes_in_namespaces(inodes: set[tuple[str, int]]) -> list[int]:
    """Pids whose net or mnt namespace is one of ``inodes`` ((kind, inode) pairs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for kind in ("net", "mnt"):
            inode = _ns_inode(f"/proc/{entry.name}/ns/{kind}")
            if inode is not None and (kind, inode) in inodes:
                found.append(int(entry.name))
                break
    return found


# --- networking ------------------------------------------------------------


def _link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return ok([*prefix, "link", "show", "dev", name])


def ensure_root_bridges(mtu: int) -> None:
    for bridge, address, prefix in (
        (layout.MIGRATION_BRIDGE, layout.MIGRATION_GATEWAY, layout.MIGRATION_PREFIX),
        (layout.PRODUCTION_ROOT_BRIDGE, layout.COLLECTOR_ADDRESS, layout.PRODUCTION_PREFIX),
    ):
        if not _link_exists(bridge):
            run(["ip", "link", "add", bridge, "mtu", str(mtu), "type", "bridge"])
        run(["ip", "link", "set", bridge, "mtu", str(mtu)])
        run(["ip", "addr", "replace", f"{address}/{prefix}", "dev", bridge])
        run(["ip", "link", "set", bridge, "up"])


def remove_root_bridges() -> None:
    for bridge in (layout.MIGRATION_BRIDGE, layout.PRODUCTION_ROOT_BRIDGE):
        if _link_exists(bridge):
            ok(["ip", "link", "del", bridge])


def _ip(netns: str | None, *args: str) -> None:
    run(["ip", *(["-n", netns] if netns else []), *args])


def _veth(root_end: str, host_end: str, netns: str, mtu: int, root_bridge: str) -> None:
    if _link_exists(root_end):
        ok(["ip", "link", "del", root_end])
    m = str(mtu)
    _ip(None, "link", "add", root_end, "mtu", m, "type", "veth",
        "peer", "name", host_end, "mtu", m, "netns", netns)  # fmt: skip
    _ip(None, "link", "set", root_end, "master", root_bridge, "up")


def create_netns(host: LabHostLayout, mtu: int) -> None:
    ns = host.netns
    if not ok(["ip", "netns", "pids", ns]):
        run(["ip", "netns", "add", ns])
    _ip(ns, "link", "set", "lo", "up")
    # Migration network: the host's management/migration address.
    _veth(host.mig_veth_root, host.mig_veth_host, ns, mtu, layout.MIGRATION_BRIDGE)
    address = f"{host.migration_address}/{layout.MIGRATION_PREFIX}"
    _ip(ns, "addr", "replace", address, "dev", host.mig_veth_host)
    _ip(ns, "link", "set", host.mig_veth_host, "up")
    # Production: a host-local bridge uplinked to the shared root bridge, so
    # VMs keep their L2 segment (and address) wherever they migrate.
    bridge = layout.PRODUCTION_HOST_BRIDGE
    if not _link_exists(bridge, ns):
        _ip(ns, "link", "add", bridge, "mtu", str(mtu), "type", "bridge")
    _ip(ns, "link", "set", bridge, "up")
    _veth(host.prod_veth_root, host.prod_veth_host, ns, mtu, layout.PRODUCTION_ROOT_BRIDGE)
    _ip(ns, "link", "set", host.prod_veth_host, "master", bridge, "up")


def list_lab_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith("ferry-host")]


def shape_link(host: LabHostLayout, rate: str | None) -> None:
    """Limit both directions of the host's migration link (each veth end's egress)."""
    for prefix, dev in (
        (["tc"], host.mig_veth_root),
        (["tc", "-n", host.netns], host.mig_veth_host),
    ):
        ok([*prefix, "qdisc", "del", "dev", dev, "root"])
        if rate is None:
            continue
        # htb sizes its own burst for the rate, unlike tbf.
        run([*prefix, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"])
        htb_class = ["parent", "1:", "classid", "1:10", "htb", "rate", rate, "ceil", rate]
        run([*prefix, "class", "add", "dev", dev, *htb_class])


def set_carrier(host: LabHostLayout, up: bool) -> None:
    # Only the root end goes down: the host end keeps its address and route,
    # so restoring is just "up" again, like replugging a cable.
    run(["ip", "link", "set", host.mig_veth_root, "up" if up else "down"])


# --- libvirtd --------------------------------------------------------------


def _libvirtd_conf(host: LabHostLayout) -> str:
    return f"""\
# Written by ferry lab. TLS only, and only for lab-CA client certificates.
listen_tls = 1
listen_tcp = 0
listen_addr = "{host.migration_address}"
auth_tls = "none"
tls_no_verify_certificate = 0
ca_file = "/etc/pki/CA/cacert.pem"
cert_file = "/etc/pki/libvirt/servercert.pem"
key_file = "/etc/pki/libvirt/private/serverkey.pem"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "{uuid.uuid4()}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def _qemu_conf(host: LabHostLayout) -> str:
    return f"""\
# Written by ferry lab. All hosts share one kernel: no cgroups, no per-VM
# mount namespaces, no relabelling, no virtlogd.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
migration_address = "{host.migration_address}"
migration_host = "{host.migration_address}"
# QEMU's own TLS for migration streams (ferry asks for it on every move): its
# certificates from the lab CA, and a destination accepts only sources the CA vouches for.
migrate_tls_x509_cert_dir = "{tls.QEMU_CERT_DIR}"
migrate_tls_x509_verify = 1
"""


def prepare_host_files(host: LabHostLayout, ca: tls.Issued) -> None:
    root = host.root_dir
    for folder in PRIVATE_MOUNTS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    host.local_datastore_dir.mkdir(parents=True, exist_ok=True)
    etc = root / "etc-libvirt"
    (etc / "libvirtd.conf").write_text(_libvirtd_conf(host))
    (etc / "qemu.conf").write_text(_qemu_conf(host))
    tls.install_host_pki(ca, root / "etc-pki", host.name, host.migration_address)
    # Mount points must exist in the shared filesystem before binding over them.
    for target in (*PRIVATE_MOUNTS.values(), str(layout.LOCAL_DATASTORE_MOUNTPOINT)):
        Path(target).mkdir(parents=True, exist_ok=True)
    layout.SHARED_DATASTORE_DIR.mkdir(parents=True, exist_ok=True)
    mounts = [(root / src, Path(dst)) for src, dst in PRIVATE_MOUNTS.items()]
    mounts.append((host.local_datastore_dir, layout.LOCAL_DATASTORE_MOUNTPOINT))
    lines = ["#!/bin/sh", "set -e"]
    lines += [f"mount --bind {shlex.quote(str(s))} {shlex.quote(str(d))}" for s, d in mounts]
    # An older CPU for this host only (ferry.lab.cpu): its QEMU, seen through this
    # mount namespace alone, is a wrapper that switches CPU features off.
    wrapper, real = shlex.quote(str(qemu_wrapper(host))), shlex.quote(str(qemu_real(host)))
    lines += [
        f"if [ -x {wrapper} ]; then",
        f"  touch {real}",
        f"  mount --bind {QEMU_BINARY} {real}",
        f"  mount --bind {wrapper} {QEMU_BINARY}",
        "fi",
    ]
    # libvirtd runs under ferry.lab.reaper, which reaps exited QEMU processes at
    # once, as a real host's init does.
    lines.append(
        f"exec {shlex.quote(sys.executable)} -m ferry.lab.reaper "
        f"libvirtd --listen --pid-file {shlex.quote(str(pid_file(host)))}"
        " -f /etc/libvirt/libvirtd.conf"
    )
    (root / "start.sh").write_text("\n".join(lines) + "\n")


QEMU_BINARY = "/usr/bin/qemu-system-x86_64"


def qemu_wrapper(host: LabHostLayout) -> Path:
    return host.root_dir / "qemu-older-cpu"


def qemu_real(host: LabHostLayout) -> Path:
    return host.root_dir / "qemu-real"


def start_libvirtd(host: LabHostLayout, timeout: float = 30.0) -> int:
    """Start the host's libvirtd detached; returns its pid.

    ``ip netns exec`` already gives the command a fresh mount namespace with
    slave propagation, so the bind mounts in start.sh stay inside this host.
    libvirtd is a child of the reaper the shell execs, so its pid is read from
    the pid file libvirtd writes as it starts.
    """
    pid_file(host).unlink(missing_ok=True)
    with open(log_file(host), "ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "sh", str(host.root_dir / "start.sh")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = libvirtd_pid(host)
        if pid is not None:
            return pid
        if proc.poll() is not None:
            raise LabError(f"{host.name}: libvirtd exited during start-up:\n{_log_tail(host)}")
        time.sleep(0.05)
    raise LabError(f"{host.name}: libvirtd wrote no pid file in {timeout:.0f}s:\n"
                   f"{_log_tail(host)}")


def _log_tail(host: LabHostLayout, lines: int = 15) -> str:
    text = ""
    for path in (log_file(host), host.root_dir / "log-libvirt" / "libvirtd.log"):
        with contextlib.suppress(OSError):
            text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    return text.strip()


def answers(host: LabHostLayout, timeout: float = 15.0) -> bool:
    """The host's libvirtd completes a TLS handshake with our client certificate."""
    try:
        return virsh(host, "uri", check=False, timeout=timeout).returncode == 0
    except LabError:
        return False


def wait_ready(host: LabHostLayout, pid: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            raise LabError(f"{host.name}: libvirtd exited during start-up:\n{_log_tail(host)}")
        if answers(host, timeout=10.0):
            return
        time.sleep(0.3)
    raise LabError(
        f"{host.name}: libvirtd did not answer over TLS in {timeout:.0f}s:\n{_log_tail(host)}"
    )


def _define(host: LabHostLayout, kind: str, name: str, xml: str) -> None:
    path = host.root_dir / f"{kind}-{name}.xml"
    path.write_text(xml)
    virsh(host, f"{kind}-define", str(path))
    if kind == "pool":
        virsh(host, "pool-build", name)
    virsh(host, f"{kind}-start", name)
    virsh(host, f"{kind}-autostart", name)


def configure_libvirt(host: LabHostLayout, last: bool) -> None:
    """Networks and datastores, defined as an admin would, over TLS."""
    _define(
        host,
        "net",
        layout.PRODUCTION_NETWORK,
        (
            f"<network><name>{layout.PRODUCTION_NETWORK}</name><forward mode='bridge'/>"
            f"<bridge name='{layout.PRODUCTION_HOST_BRIDGE}'/></network>"
        ),
    )
    if last:
        # No <forward> and no <ip>: an internal-only switch that needs no dnsmasq.
        _define(
            host,
            "net",
            layout.ISOLATED_NETWORK,
            (
                f"<network><name>{layout.ISOLATED_NETWORK}</name>"
                f"<bridge name='{layout.ISOLATED_BRIDGE}' stp='off'/></network>"
            ),
        )
    for pool, path in (
        (layout.SHARED_POOL, layout.SHARED_DATASTORE_DIR),
        (layout.LOCAL_POOL, layout.LOCAL_DATASTORE_MOUNTPOINT),
    ):
        _define(
            host,
            "pool",
            pool,
            (f"<pool type='dir'><name>{pool}</name><target><path>{path}</path></target></pool>"),
        )


def warm_capabilities(lays: list[LabHostLayout]) -> None:
    """Probe QEMU once and seed every other host's capability cache with it.

    libvirtd probes QEMU lazily, on the first request that needs it (~8 s under
    TCG on two cores), which would land inside some later define or migration.
    Every host runs the same binaries on the same kernel, so one probe is valid
    for all of them and the copies are accepted as cache hits.
    """
    if not lays:
        return
    first, rest = lays[0], lays[1:]
    virsh(first, "capabilities", timeout=180.0)
    cache = first.root_dir / "cache-libvirt" / "qemu" / "capabilities"
    for other in rest:
        target = other.root_dir / "cache-libvirt" / "qemu" / "capabilities"
        target.mkdir(parents=True, exist_ok=True)
        for entry in cache.glob("*.xml"):
            shutil.copy2(entry, target / entry.name)
    for other in rest:
        virsh(other, "capabilities", timeout=180.0)


# --- teardown --------------------------------------------------------------


def destroy_domains(host: LabHostLayout) -> None:
    if libvirtd_pid(host) is None:
        return
    try:
        out = virsh(host, "list", "--name", check=False, timeout=15.0).stdout
    except LabError:
        return
    for name in (n.strip() for n in out.splitlines()):
        if name:
            # Whatever does not die here, the namespace sweep below kills.
            with contextlib.suppress(LabError):
                virsh(host, "destroy", name, check=False, timeout=30.0)


def teardown_host(host: LabHostLayout, recorded_pid: int | None = None) -> None:
    """Stop everything of one host; every step tolerates it being absent."""
    destroy_domains(host)
    namespaces: set[tuple[str, int]] = set()
    netns_inode = _ns_inode(f"/run/netns/{host.netns}")
    if netns_inode is not None:
        namespaces.add(("net", netns_inode))
    pids = {p for p in (recorded_pid, libvirtd_pid(host)) if p and pid_alive(p, "libvirtd")}
    for pid in pids:
        mnt = _ns_inode(f"/proc/{pid}/ns/mnt")
        if mnt is not None and mnt != _ns_inode("/proc/self/ns/mnt"):
            namespaces.add(("mnt", mnt))
        kill_pid(pid)
    # QEMU is daemonised by libvirtd (reparented away from it), so find the
    # leftovers by the namespaces they live in rather than by parent pid.
    if namespaces:
        for pid in processes_in_namespaces(namespaces):
            kill_pid(pid, grace=3.0)
    if ok(["ip", "netns", "pids", host.netns]):
        ok(["ip", "netns", "del", host.netns])
    for dev in (host.mig_veth_root, host.prod_veth_root):
        if _link_exists(dev):
            ok(["ip", "link", "del", dev])

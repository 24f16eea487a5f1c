"""``ferry lab up/status/down``: N libvirt hosts on this machine, and their state.

The state file is what later commands (and ``lab down`` after a crash) go by;
it is written before any host is started so a partial ``up`` can always be
undone. Everything else in ferry reaches the hosts only through their URIs.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ferry import config
from ferry.errors import LabError
from ferry.lab import hosts as hostlib
from ferry.lab import layout, tls
from ferry.lab.layout import LabHostLayout

__all__ = [
    "LabHostState",
    "LabState",
    "client_uri",
    "cut_link",
    "host_exec",
    "lab_down",
    "lab_status",
    "lab_up",
    "load_state",
    "restore_link",
    "set_link",
]

LOCK_FILE = layout.LAB_ROOT / ".lock"
PKI_RECORD = layout.PKI_DIR / "client-pki-dirs"
MAX_HOSTS = 200  # addresses are 198.18.0.(10 + N)
client_uri = hostlib.client_uri
host_exec = hostlib.host_exec
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class LabHostState:
    name: str
    index: int
    netns: str
    uri: str
    migration_address: str
    libvirtd_pid: int | None = None
    link: str | None = None
    # Filled by lab_status() only; never persisted (they would go stale).
    alive: bool = False
    answers: bool = False

    @property
    def healthy(self) -> bool:
        return self.alive and self.answers


@dataclass
class LabState:
    hosts: list[LabHostState]
    accel: str | None = None
    created: str = ""
    mtu: int = 1500
    pki_dir: str = field(default_factory=lambda: str(config.pki_dir()))

    @property
    def healthy(self) -> bool:
        return bool(self.hosts) and all(h.healthy for h in self.hosts)

    def host(self, name: str) -> LabHostState:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no lab host named {name!r}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for h in data["hosts"]:
            del h["alive"], h["answers"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(
            hosts=[LabHostState(**h) for h in data["hosts"]],
            accel=data.get("accel"),
            created=data.get("created", ""),
            mtu=int(data.get("mtu", 1500)),
            pki_dir=data.get("pki_dir", str(config.pki_dir())),
        )


def load_state() -> LabState | None:
    try:
        return LabState.from_json(json.loads(layout.STATE_FILE.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"unreadable lab state {layout.STATE_FILE}: {exc}") from exc


def _save_state(state: LabState) -> None:
    layout.STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = layout.STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.replace(layout.STATE_FILE)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One lab operation at a time: two concurrent ``up``s would fight over links."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _parallel(fn: Callable[[LabHostLayout], T], items: list[LabHostLayout]) -> list[T]:
    # Hosts are independent; virsh round trips and libvirtd start-up dominate.
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(fn, items))


def _check_prerequisites() -> None:
    for tool in ("ip", "tc", "nsenter", "libvirtd", "virsh"):
        if shutil.which(tool) is None:
            raise LabError(f"the lab needs {tool!r}, which is not installed")
    try:
        subprocess.run(["id", "libvirt-qemu"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        # libvirtd refuses to start without it, even though QEMU runs as root.
        raise LabError("user 'libvirt-qemu' is missing (install libvirt-daemon-system)") from exc


def _refresh_status(state: LabState) -> LabState:
    def probe(h: LabHostState) -> LabHostState:
        lay = LabHostLayout(h.index)
        h.alive = hostlib.pid_alive(h.libvirtd_pid, "libvirtd")
        h.answers = h.alive and hostlib.answers(lay)
        return h

    with ThreadPoolExecutor(max_workers=max(1, len(state.hosts))) as pool:
        list(pool.map(probe, state.hosts))
    return state


def lab_status() -> LabState | None:
    """The recorded lab with each host's ``alive``/``answers`` freshly probed."""
    state = load_state()
    return None if state is None else _refresh_status(state)


def _install_guest(lays: list[LabHostLayout]) -> str:
    # Imported here: the guest builder is heavy and optional for host-only tests.
    from ferry.lab.guest import detect_accel, ensure_guest_image

    image = ensure_guest_image()
    accel = detect_accel(image)
    layout.SHARED_DATASTORE_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.kernel, layout.SHARED_DATASTORE_DIR / layout.GUEST_KERNEL_VOLUME)
    shutil.copyfile(image.initrd, layout.SHARED_DATASTORE_DIR / layout.GUEST_INITRD_VOLUME)
    _parallel(lambda lay: hostlib.virsh(lay, "pool-refresh", layout.SHARED_POOL), lays)
    return accel


def lab_up(
    hosts: int = 3, link: str | None = None, mtu: int = 1500, guest: bool = True
) -> LabState:
    """Bring up ``hosts`` lab hosts (or return the lab if it is already up and healthy).

    ``guest=False`` skips building the guest image (host-only tests).
    """
    count = hosts
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"the lab supports 1..{MAX_HOSTS} hosts, not {count}")
    if not 576 <= mtu <= 9000:
        raise LabError(f"MTU {mtu} is out of range (576..9000)")
    if link is not None:
        _check_rate(link)
    _check_prerequisites()
    with _locked():
        _adopt_client_pki()
        current = lab_status()
        if (
            current is not None
            and current.healthy
            and len(current.hosts) == count
            and current.mtu == mtu
        ):
            if any(h.link != link for h in current.hosts):
                for h in current.hosts:
                    _apply_link(current, h.name, link)
            if guest and current.accel is None:
                current.accel = _install_guest([LabHostLayout(h.index) for h in current.hosts])
                _save_state(current)
            return current
        _down_unlocked()
        return _build(count, link, mtu, guest)


def _build(count: int, link: str | None, mtu: int, guest: bool) -> LabState:
    lays = [LabHostLayout(i) for i in range(1, count + 1)]
    state = LabState(
        hosts=[
            LabHostState(h.name, h.index, h.netns, h.uri, h.migration_address, None, link)
            for h in lays
        ],
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        mtu=mtu,
        pki_dir=str(config.pki_dir()),
    )
    _save_state(state)  # before anything exists, so a crash below can be torn down
    started = time.monotonic()
    ca = tls.load_or_create_ca(layout.PKI_DIR)
    _install_client_pki(ca, config.pki_dir())
    hostlib.ensure_root_bridges(mtu)
    for lay, h in zip(lays, state.hosts, strict=True):
        hostlib.create_netns(lay, mtu)
        hostlib.shape_link(lay, link)
        hostlib.prepare_host_files(lay, ca)
        h.libvirtd_pid = hostlib.start_libvirtd(lay)
        _save_state(state)
    for lay, h in zip(lays, state.hosts, strict=True):
        assert h.libvirtd_pid is not None
        hostlib.wait_ready(lay, h.libvirtd_pid)
    log.info("lab: %d libvirtds answer after %.1fs", count, time.monotonic() - started)
    hostlib.warm_capabilities(lays)
    log.info("lab: QEMU capabilities probed after %.1fs", time.monotonic() - started)
    _parallel(lambda lay: hostlib.configure_libvirt(lay, last=lay.index == count), lays)
    log.info("lab: networks and pools defined after %.1fs", time.monotonic() - started)
    if guest:
        state.accel = _install_guest(lays)
        log.info("lab: guest image installed after %.1fs", time.monotonic() - started)
    _save_state(state)
    return _refresh_status(state)


def _lab_host_indices(state: LabState | None) -> set[int]:
    """Every host a (possibly partial) ``up`` may have made, not just recorded ones."""
    indices = {h.index for h in state.hosts} if state else set()
    hosts_dir = layout.LAB_ROOT / "hosts"
    if hosts_dir.is_dir():
        for entry in hosts_dir.iterdir():
            m = re.fullmatch(r"host(\d+)", entry.name)
            if m:
                indices.add(int(m.group(1)))
    for ns in hostlib.list_lab_netns():
        m = re.fullmatch(r"ferry-host(\d+)", ns)
        if m:
            indices.add(int(m.group(1)))
    return indices


def _holds_lab_pki(directory: Path) -> bool:
    try:
        lab_ca = (layout.PKI_DIR / tls.CA_CERT_FILE).read_bytes()
        return lab_ca == (directory / "cacert.pem").read_bytes()
    except OSError:
        return False


def _adopt_client_pki() -> None:
    """Give this FERRY_HOME a client certificate for an existing lab.

    Test suites and demos point FERRY_HOME at a fresh folder; without this a
    healthy lab would look unreachable from there and be rebuilt needlessly.
    """
    state = load_state()
    target = config.pki_dir()
    if state is None or not (layout.PKI_DIR / tls.CA_CERT_FILE).exists():
        return
    if not _holds_lab_pki(target) or not (target / "clientkey.pem").exists():
        _install_client_pki(tls.load_ca(layout.PKI_DIR), target)
    if state.pki_dir != str(target):
        state.pki_dir = str(target)
        _save_state(state)


def _install_client_pki(ca: tls.Issued, target: Path) -> None:
    tls.install_client_pki(ca, target)
    # Remembered so that down can remove every copy, whatever FERRY_HOME it runs with.
    with open(PKI_RECORD, "a") as record:
        record.write(f"{target}\n")


def _remove_client_pki(state: LabState | None) -> None:
    # Only if it is the lab's: a real deployment's PKI in FERRY_HOME is not ours.
    targets = {config.pki_dir()} | ({Path(state.pki_dir)} if state else set())
    with contextlib.suppress(OSError):
        targets |= {Path(line) for line in PKI_RECORD.read_text().splitlines() if line}
    for target in targets:
        if _holds_lab_pki(target):
            for name in ("cacert.pem", "clientcert.pem", "clientkey.pem"):
                (target / name).unlink(missing_ok=True)


def _down_unlocked() -> None:
    try:
        state = load_state()
    except LabError:
        state = None  # a corrupt state file must not block cleaning up
    recorded = {h.index: h.libvirtd_pid for h in state.hosts} if state else {}
    lays = [LabHostLayout(i) for i in sorted(_lab_host_indices(state))]
    _parallel(lambda lay: hostlib.teardown_host(lay, recorded.get(lay.index)), lays)
    hostlib.remove_root_bridges()
    _remove_client_pki(state)
    if layout.LAB_ROOT.is_dir():
        keep = {layout.GUEST_DIR, LOCK_FILE}
        for entry in layout.LAB_ROOT.iterdir():
            if entry in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    mountpoint = layout.LOCAL_DATASTORE_MOUNTPOINT
    with contextlib.suppress(OSError):
        mountpoint.rmdir()  # made by up as an empty mount point; rmdir keeps any data


def lab_down() -> None:
    """Remove everything ``lab up`` made, even after a partial ``up``."""
    with _locked():
        _down_unlocked()


def _apply_link(state: LabState, host_name: str, rate: str | None) -> None:
    h = state.host(host_name)
    hostlib.shape_link(LabHostLayout(h.index), rate)
    h.link = rate
    _save_state(state)


def _require_state() -> LabState:
    state = load_state()
    if state is None:
        raise LabError("the lab is not up (run 'ferry lab up')")
    return state


def _check_rate(rate: str) -> None:
    if not re.fullmatch(r"\d+(\.\d+)?[kmgt]?(bit|bps)", rate):
        raise LabError(f"link rate {rate!r} is not a tc rate such as '1gbit' or '100mbit'")


def set_link(host_name: str, rate: str | None) -> None:
    """Shape (``'100mbit'``) or unshape (None) a host's migration link."""
    if rate is not None:
        _check_rate(rate)
    with _locked():
        _apply_link(_require_state(), host_name, rate)


def cut_link(host_name: str) -> None:
    """Unplug the host's migration/management link (for failure tests)."""
    hostlib.set_carrier(LabHostLayout(_require_state().host(host_name).index), up=False)


def restore_link(host_name: str) -> None:
    hostlib.set_carrier(LabHostLayout(_require_state().host(host_name).index), up=True)


def wait_healthy(timeout: float = 60.0) -> LabState:
    """Poll until every host answers; after restore_link keepalives need a moment."""
    deadline = time.monotonic() + timeout
    while True:
        state = lab_status()
        if state is not None and state.healthy:
            return state
        if time.monotonic() > deadline:
            raise LabError("the lab did not become healthy in time")
        time.sleep(0.5)


def local_datastore_dir(host_name: str) -> Path:
    """Root-namespace path of a host's private local datastore (for inspection)."""
    return hostlib.host_layout(host_name).local_datastore_dir


def crash_libvirtd(host_name: str) -> None:
    """SIGKILL one host's libvirtd, as a crash would; its QEMU processes live on."""
    with _locked():
        host = _require_state().host(host_name)
        if host.libvirtd_pid is not None:
            hostlib.kill_pid(host.libvirtd_pid, grace=0.0, sig=signal.SIGKILL)


def restart_libvirtd(host_name: str) -> None:
    """(Re)start one host's libvirtd; its running VMs keep running and are picked up again."""
    with _locked():
        state = _require_state()
        host = state.host(host_name)
        lay = LabHostLayout(host.index)
        if host.libvirtd_pid is not None:
            hostlib.kill_pid(host.libvirtd_pid)
        host.libvirtd_pid = hostlib.start_libvirtd(lay)
        hostlib.wait_ready(lay, host.libvirtd_pid)
        _save_state(state)

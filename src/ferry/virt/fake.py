"""An in-memory :class:`~ferry.virt.base.HostConnection` for unit tests.

It keeps VMs, pools (with a shared "backing" so probes behave as on real
storage), volumes with their bytes (:mod:`ferry.virt.fake_storage`),
definitions, power and block copies (:mod:`ferry.virt.fake_power`) and networks
as plain data, and keeps the promises ``tests/unit/test_seam_contract.py``
holds libvirt to. Migration here only moves records and replays scripted
statistics: it proves nothing about real migration, which the lab's
integration tests cover. Tests plant failures with :attr:`FakeHost.faults`.

Every call ferry makes through the seam is counted per host (``FakeHost.calls``):
on real hosts each is a round trip over the network, so the counts are what a
test or a benchmark asserts about how ferry's work grows with the fleet.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ferry.checks.facts import CpuVerdict, LinkFacts, MigrationTls, Reachability
from ferry.checks.host import CLIENT_FILES, SERVER_FILES, tls_gaps
from ferry.errors import FerryError, HostUnreachable, MigrationCancelled, NotFound, VirtError
from ferry.model import VM, MigrationSide, Network, Pool, PostcopyState, VMState
from ferry.virt.base import (
    CloseCallback,
    CpuFunctions,
    GuestPlatform,
    HostConnection,
    HostFacts,
    ImageInfo,
    IterationCallback,
    LifecycleCallback,
    MigrationOptions,
    MigrationStats,
)
from ferry.virt.fake_power import FakePower, domain_xml
from ferry.virt.fake_storage import Backing
from ferry.virt.qemuconf import DEFAULT_CERT_DIR

__all__ = ["Backing", "FakeHost", "FakeWorld"]


@dataclass
class FakeWorld:
    hosts: dict[str, FakeHost] = field(default_factory=dict)

    def host(self, name: str) -> FakeHost:
        return self.hosts[name]

    def calls(self) -> int:
        """Seam calls made to every host so far."""
        return sum(host.calls.total() for host in self.hosts.values())

    def reset_calls(self) -> None:
        for host in self.hosts.values():
            host.calls.clear()

    def connect_by_name(self, name: str) -> FakeHost:
        """Reaches host ``name`` as ferry's current connection to it would."""
        host = self.hosts[name]
        host.answer()
        return host

    def connect(self, name: str, uri: str) -> FakeHost:
        """Reaches the host the URI names, whatever ferry calls it."""
        host = self.hosts[urlsplit(uri).hostname or ""]
        host.answer()
        return host


class FakeHost(FakePower):
    def __init__(self, world: FakeWorld, name: str, host_uuid: str) -> None:
        self.world = world
        self.name = name
        self.host_uuid = host_uuid
        self.vms: dict[str, VM] = {}
        self.pools: dict[str, tuple[Pool, Backing]] = {}
        self.networks: list[Network] = []
        self.callbacks: list[LifecycleCallback] = []
        self.script: list[MigrationStats] = []  # stats replayed during migrate()
        self.fail_migration: str | None = None
        # Set: a migration from here waits for it before its switchover (a test's chance
        # to look at a VM in the middle of its move); ``migrating`` tells it has begun.
        self.hold: threading.Event | None = None
        self.migrating = threading.Event()
        self.leave_incoming = False  # a failed migration leaves the destination's copy
        self.downtimes: list[int] = []
        self.abort = threading.Event()
        self.kicks: list[str] = []  # VMs paused (and resumed) after a rollback
        self.cpu_verdict = CpuVerdict(True)
        self.disk_bytes: tuple[int, int] = (2**30, 2**28)  # every disk's (capacity, allocation)
        self.links: dict[str, LinkFacts] = {}
        self.busy_disks: list[str] = []
        self.reachable_peers: set[str] | None = None  # None: every peer answers
        self.cpu_features: tuple[str, ...] = ("sse2", "vmx")
        # EVC: the host CPU guests can get, and libvirt's CPU functions to judge it with
        # (a test gives it ferry.virt.libvirt_cpu.CpuCatalog, libvirt's own CPU map).
        self.host_cpu_xml = "<cpu><arch>x86_64</arch><model>Westmere</model></cpu>"
        self.cpu_catalog: CpuFunctions | None = None
        self.block_devices: set[str] = set()
        # Every certificate QEMU wants, and clients verified: a TLS-ready host.
        self.tls = MigrationTls(DEFAULT_CERT_DIR, frozenset({*SERVER_FILES, *CLIENT_FILES}),
                                verify_clients=True)
        self.migrated_with: list[MigrationOptions] = []  # every migration asked, in order
        # path -> how the host's storage reads that file; a path in a pool but not here
        # reads as its name's format with no backing file
        self.images: dict[str, ImageInfo] = {}
        self._current: MigrationStats | None = None
        self.up = True  # False: the host's libvirtd does not answer (go_down, come_up)
        self.close_callbacks: list[CloseCallback] = []
        self.calls: Counter[str] = Counter()  # seam method -> calls made to this host
        self.definitions: dict[str, str] = {}  # persistent VMs' saved definitions
        self.faults: dict[str, FerryError] = {}  # method name -> what its next call raises
        self.mirror_polls: int | None = 0  # a block copy is ready after this many looks
        self._copies = {}
        world.hosts[name] = self

    # -- set-up helpers ------------------------------------------------
    def add_pool(self, name: str, path: str, backing: Backing) -> None:
        self.pools[name] = (Pool(self.name, name, "dir", path, True, 10**12, 0, 10**12), backing)

    def add_network(self, name: str, forward: str | None = "bridge") -> None:
        self.networks.append(Network(self.name, name, "br0", forward, True))

    def add_vm(self, vm: VM) -> None:
        self.vms[vm.name] = replace(vm, host=self.name)
        if vm.persistent:
            self.definitions[vm.name] = domain_xml(vm)

    def answer(self) -> None:
        if not self.up:
            raise HostUnreachable(f"host {self.name} does not answer")

    # -- HostConnection ------------------------------------------------
    def facts(self) -> HostFacts:
        self.answer()
        return HostFacts(self.name, self.host_uuid, "x86_64", "Intel", "Skylake", 4, 8192,
                         4096, "9.0.0", "7.2.0", ("qemu",), self.cpu_features)

    def guest_platform(self, domain_type: str = "qemu") -> GuestPlatform:
        return GuestPlatform(domain_type, "pc-i440fx-7.2", ("Nehalem",))

    def list_vms(self) -> list[VM]:
        self.answer()
        return list(self.vms.values())

    def get_vm(self, name: str) -> VM | None:
        self.answer()
        return self.vms.get(name)

    def list_pools(self) -> list[Pool]:
        return [pool for pool, _ in self.pools.values()]

    def list_networks(self) -> list[Network]:
        return list(self.networks)

    def migrate(self, name: str, options: MigrationOptions,
                on_iteration: IterationCallback | None = None) -> None:
        dest = self.world.connect("", options.dest_uri)
        if name in dest.vms:
            raise VirtError(f"host {dest.name}: domain {name} already exists")
        self.migrated_with.append(options)
        gaps = tls_gaps(self.name, self.tls, dest.name, dest.tls) if options.tls else []
        if gaps:  # as QEMU fails to load its credentials, before anything moves
            raise VirtError(f"host {gaps[0].host}: Unable to access credentials "
                            f"{gaps[0].cert_dir}/{gaps[0].missing[0]}")
        # As libvirt shows a move: the source runs with an outgoing job, the
        # destination holds a paused, transient incoming copy of the same UUID.
        dest.vms[name] = replace(self.vms[name], host=dest.name, state=VMState.PAUSED,
                                 persistent=False, migration=MigrationSide.INCOMING)
        self.vms[name] = replace(self.vms[name], migration=MigrationSide.OUTGOING)
        dest._emit(name, "started")
        self.migrating.set()
        for stats in self.script:
            if self.abort.wait(0.02):
                break
            self._current = stats
            if on_iteration is not None:
                on_iteration(stats.iteration)
        while self.hold is not None and not self.hold.wait(0.02) and not self.abort.is_set():
            continue  # the test looks at the VM in its move, then lets it go on
        self._current = None
        self.vms[name] = replace(self.vms[name], migration=None)
        if self.abort.is_set() or self.fail_migration:
            if not self.leave_incoming:
                dest.vms.pop(name)
            if self.abort.is_set():
                raise MigrationCancelled(f"migration of {name} aborted")
            raise VirtError(self.fail_migration or "failed")
        self._emit(name, "suspended")
        dest.vms[name] = replace(dest.vms[name], state=VMState.RUNNING, persistent=True,
                                 migration=None)
        dest._emit(name, "resumed")
        del self.vms[name]
        dest.definitions[name] = self.definitions.pop(name, "") or domain_xml(dest.vms[name])
        self._emit(name, "undefined")

    def migration_stats(self, name: str) -> MigrationStats | None:
        return self._current

    def completed_migration_stats(self, name: str) -> MigrationStats | None:
        return MigrationStats(elapsed_ms=100, downtime_ms=42, iteration=len(self.script))

    def abort_migration(self, name: str) -> None:
        self.abort.set()

    def set_max_downtime(self, name: str, ms: int) -> None:
        self.downtimes.append(ms)

    def start_postcopy(self, name: str) -> None:
        raise VirtError("post-copy is not modelled by the fake host")

    def postcopy_state(self, name: str) -> PostcopyState:
        return PostcopyState.NONE

    def pause_postcopy(self, name: str) -> None:
        raise VirtError("post-copy is not modelled by the fake host")

    def subscribe_lifecycle(self, callback: LifecycleCallback) -> None:
        self.callbacks.append(callback)

    def compare_cpu(self, domain_type: str, cpu_xml: str) -> CpuVerdict:
        return self.cpu_verdict

    def host_cpu(self, domain_type: str) -> str:
        return self.host_cpu_xml

    def vm_cpu(self, name: str) -> str | None:
        vm = self.vms.get(name)
        if vm is None:
            raise NotFound(f"host {self.name}: no VM named {name}")
        return vm.cpu_xml

    def cpu_functions(self, domain_type: str) -> CpuFunctions:
        if self.cpu_catalog is None:
            raise VirtError(f"fake host {self.name} was given no CPU catalog")
        return self.cpu_catalog

    def interface_link(self, name: str) -> LinkFacts | None:
        return self.links.get(name)

    def block_device_present(self, path: str) -> bool:
        return path in self.block_devices

    def migration_tls(self) -> MigrationTls:
        return self.tls

    def probe_peer(self, peer_uri: str, probe_name: str) -> Reachability:
        peer = urlsplit(peer_uri).hostname or ""
        answers = peer in self.world.hosts and self.world.hosts[peer].up
        if answers and (self.reachable_peers is None or peer in self.reachable_peers):
            return Reachability(True, f"{self.name} reached {peer}")
        return Reachability(False, f"{self.name} cannot reach {peer}")

    def alive(self) -> bool:
        return self.up

    def on_close(self, callback: CloseCallback) -> None:
        self.close_callbacks.append(callback)

    def close(self) -> None:
        return None

    # -- faults ----------------------------------------------------------
    def go_down(self, reason: str = "the host's libvirtd closed it") -> None:
        """The host's libvirtd stops: connections close and every call fails until come_up()."""
        self.up = False
        callbacks, self.close_callbacks = self.close_callbacks, []
        for callback in callbacks:
            callback(reason)

    def come_up(self) -> None:
        self.up = True


def _fake_is_the_whole_seam(world: FakeWorld) -> HostConnection:
    return FakeHost(world, "checked", "by mypy")  # mypy fails here if a seam call is missing


F = TypeVar("F", bound=Callable[..., Any])


def _counted(method: F) -> F:
    @functools.wraps(method)
    def counted(self: FakeHost, *args: Any, **kwargs: Any) -> Any:
        self.calls[method.__name__] += 1
        return method(self, *args, **kwargs)
    return counted  # type: ignore[return-value]


# Counted where ferry calls a host: every method of the seam the fake has.
for _method in [n for n in dir(HostConnection) if not n.startswith("_")]:
    if callable(getattr(FakeHost, _method, None)):
        setattr(FakeHost, _method, _counted(getattr(FakeHost, _method)))

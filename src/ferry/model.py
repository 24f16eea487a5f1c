"""Plain typed data: what ferry knows about hosts, datastores, networks and VMs.

Jobs have their own module, :mod:`ferry.job`.

Everything here is immutable and free of IO, so checks and policies can be
pure functions over it and tests can build it by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from typing import Protocol, TypeVar


class VMState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    OTHER = "other"


class MigrationSide(StrEnum):
    """Which side of a live migration a libvirt domain is, as its host's libvirt says.

    The incoming side is not the VM: it is the destination's paused copy that
    QEMU fills while the VM still runs on the source (libvirt 9.0: paused, reason
    "migrating", transient; its job statistics are refused there).
    """

    INCOMING = "incoming"
    OUTGOING = "outgoing"


class PostcopyState(StrEnum):
    """Where a VM stands in post-copy, as its host's libvirt says (state and reason).

    In post-copy neither host holds the whole VM: the destination runs it and
    fetches from the source the pages it has not received yet.
    """

    NONE = "none"  # not in post-copy
    ACTIVE = "active"  # post-copy runs: source paused, destination running
    FAILED = "failed"  # interrupted: libvirt saw the link fail; recovery may resume it


@dataclass(frozen=True)
class MoveHold:
    """What holds a VM in a move: ferry's unfinished job, or a migration ferry did not start."""

    dest_host: str | None  # where it is going, when known
    job_id: str | None = None  # None: libvirt shows a migration that no ferry job runs
    kind: str | None = None  # the job's kind: migrate, cold-migrate, ...
    state: str | None = None  # the job's state: queued, running, cancelling

    @property
    def by_ferry(self) -> bool:
        return self.job_id is not None


@dataclass(frozen=True)
class Disk:
    """One disk-like device of a VM, as its libvirt definition describes it."""

    target: str  # guest device name: vda, sdb, hdc
    device: str  # disk | cdrom | floppy | lun
    source_type: str  # file | block | volume | network | none
    source: str | None  # host path (file/block) or None for an empty drive
    driver_format: str | None = None  # qcow2, raw, ...
    transient: bool = False
    readonly: bool = False
    # The files behind the image, nearest first, as the running VM's live definition
    # shows them (libvirt read them from the images at start); a saved definition has none.
    backing_chain: tuple[str, ...] = ()

    @property
    def backing_store(self) -> str | None:
        """The first backing file, if the definition shows one."""
        return self.backing_chain[0] if self.backing_chain else None


class FileUse(StrEnum):
    """How a VM uses a host path its definition names, which decides what a move needs."""

    READ = "read"  # its content is the VM's (kernel, NVRAM, shared folder): must be shared
    FIRMWARE = "firmware"  # read-only code the host installs (UEFI): each host has its own
    WRITTEN = "written"  # output QEMU creates (serial log): written anew where the VM runs
    DEVICE = "device"  # a host device node or socket: the destination needs its own


@dataclass(frozen=True)
class HostFile:
    """A host path a VM's definition names outside its disks."""

    what: str  # kernel, initrd, nvram, serial log, filesystem /share, ...
    path: str
    use: FileUse


@dataclass(frozen=True)
class Interface:
    mac: str
    kind: str  # network | bridge | direct | user | ...
    network: str | None  # libvirt network name, for kind == network
    portgroup: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class CpuAffinity:
    """Where the VM is pinned to host CPUs (the seed's "CPU affinity")."""

    vcpupin: tuple[str, ...] = ()  # cpusets from <vcpupin>
    vcpu_cpuset: str | None = None  # <vcpu cpuset=...>
    emulatorpin: str | None = None

    @property
    def pinned(self) -> bool:
        return bool(self.vcpupin or self.vcpu_cpuset or self.emulatorpin)


@dataclass(frozen=True)
class VM:
    name: str
    uuid: str
    host: str
    state: VMState
    memory_kib: int
    vcpus: int
    persistent: bool = True
    disks: tuple[Disk, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    cpu_mode: str | None = None  # custom | host-model | host-passthrough | maximum
    cpu_model: str | None = None
    affinity: CpuAffinity = field(default_factory=CpuAffinity)
    kernel: str | None = None
    initrd: str | None = None
    host_files: tuple[HostFile, ...] = ()  # every other host path the definition names
    domain_type: str = "qemu"
    snapshot_count: int = 0
    lab_address: str | None = None  # the lab guest's address on Production, when it is one
    cpu_xml: str | None = None  # the <cpu> element, for the destination's own comparison
    # What libvirt says: this domain is the source or the destination's copy of a migration.
    migration: MigrationSide | None = None
    postcopy: PostcopyState = PostcopyState.NONE
    # Set by the control plane: the move the VM is in (ferry's job, or libvirt's word).
    moving: MoveHold | None = None
    # False: its host does not answer now; this is what the host said last
    current: bool = True

    @property
    def memory_mib(self) -> int:
        return self.memory_kib // 1024

    def files(self) -> list[tuple[str, str]]:
        """(what, host path) for every file or folder the VM reads to run: disks, ISOs,
        kernel, initrd, device tree, NVRAM, shared folders (not backing files: the
        images name those, see :class:`ferry.checks.facts.ImageFacts`)."""
        found: list[tuple[str, str]] = []
        for disk in self.disks:
            if disk.source and disk.source_type in ("file", "volume"):
                found.append((f"{disk.device} {disk.target}", disk.source))
        if self.kernel:
            found.append(("kernel", self.kernel))
        if self.initrd:
            found.append(("initrd", self.initrd))
        found.extend((f.what, f.path) for f in self.host_files if f.use is FileUse.READ)
        return found


# The allowed values of the host settings an admin may change.
MIN_MAX_MIGRATIONS = 1
MAX_MAX_MIGRATIONS = 64
MIN_MEMORY_LIMIT_MIB = 0
# The store keeps the limit in a 32-bit INTEGER column (PostgreSQL's INTEGER): 2 PiB.
MAX_MEMORY_LIMIT_MIB = 2**31 - 1
# A migration bandwidth limit, in MiB/s: from a trickle to more than any NIC carries.
MIN_BANDWIDTH_MIBPS = 1
MAX_BANDWIDTH_MIBPS = 1_000_000


@dataclass(frozen=True)
class HostSettings:
    """What an admin declares about a host (ferry cannot discover these): the one
    definition of each setting and its default. :class:`Host` carries them, the store
    keeps them, the API shows them and the checks and the scheduler read them."""

    migration_enabled: bool = True
    migration_address: str | None = None  # where QEMU's migration stream goes
    migration_interface: str | None = None  # the host NIC carrying migration traffic
    migration_network_isolated: bool = False  # the admin says that network is isolated
    # The admin accepts that migrations to and from this host may cross the network in
    # clear text when the pair cannot do TLS; off, such a move is refused.
    allow_cleartext_migration: bool = False
    # The seed: a host takes part in at most two migrations at once.
    max_migrations: int = 2
    memory_limit_mib: int | None = None  # admin's cap for VMs on this host; None = all of it
    # MiB/s a live move to or from this host may use on the migration network; None: all
    # it gets.
    migration_bandwidth_mibps: int | None = None
    maintenance: bool = False

    @classmethod
    def of(cls, host: Host) -> HostSettings:
        """The settings recorded on a registered host."""
        return cls(**{name: getattr(host, name) for name in HOST_SETTINGS})


HOST_SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(HostSettings))
DEFAULT_SETTINGS = HostSettings()


@dataclass(frozen=True)
class Host:
    """A registered libvirt host, with what ferry last discovered about it.

    Its admin-declared settings are :class:`HostSettings`'s, defaults included."""

    name: str
    uri: str
    migration_address: str | None = DEFAULT_SETTINGS.migration_address
    migration_enabled: bool = DEFAULT_SETTINGS.migration_enabled
    maintenance: bool = DEFAULT_SETTINGS.maintenance
    max_migrations: int = DEFAULT_SETTINGS.max_migrations
    memory_limit_mib: int | None = DEFAULT_SETTINGS.memory_limit_mib
    migration_bandwidth_mibps: int | None = DEFAULT_SETTINGS.migration_bandwidth_mibps
    migration_interface: str | None = DEFAULT_SETTINGS.migration_interface
    migration_network_isolated: bool = DEFAULT_SETTINGS.migration_network_isolated
    allow_cleartext_migration: bool = DEFAULT_SETTINGS.allow_cleartext_migration
    cluster: str | None = None  # the cluster the host belongs to, if any
    connected: bool = False
    error: str | None = None
    hostname: str | None = None
    host_uuid: str | None = None
    cpu_vendor: str | None = None
    cpu_model: str | None = None
    cpus: int = 0
    memory_mib: int = 0
    free_memory_mib: int = 0
    libvirt_version: str | None = None
    hypervisor_version: str | None = None
    cpu_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvcMode:
    """The one CPU a cluster presents to every VM started in it (the seed's EVC baseline)."""

    requested: str  # what the admin asked for: "auto", or a CPU model's name
    model: str  # the named CPU model the definition is built on
    vendor: str | None  # None: a named mode on hosts that were not asked
    cpu_xml: str  # the guest <cpu> definition ferry gives VMs started in the cluster
    features: tuple[str, ...]  # every feature the definition gives a guest, model expanded
    enabled_at: float = 0.0


@dataclass(frozen=True)
class Cluster:
    """A named group of hosts, managed together (the seed's cluster)."""

    name: str
    hosts: tuple[str, ...] = ()
    created_at: float = 0.0
    evc: EvcMode | None = None
    migration_policy: str | None = None  # its VMs' moves' policy unless one is asked


@dataclass(frozen=True)
class PolicyChoice:
    """The convergence policy a live move of one VM runs with when none is asked."""

    vm: str
    default: str | None  # the VM's own default, if it has one
    policy: str  # what a move of it runs with now
    why: str  # "VM web1's default", "cluster prod's default", "ferry's default"


@dataclass(frozen=True)
class EvcHostView:
    """One host of an EVC cluster as ``ferry cluster evc show`` lists it."""

    host: str
    model: str | None = None  # the host CPU it can give guests
    vendor: str | None = None
    hidden: tuple[str, ...] = ()  # features the host has that the mode hides from VMs
    missing: tuple[str, ...] = ()  # features the mode needs that the host lacks
    error: str | None = None  # why the host could not be asked


@dataclass(frozen=True)
class EvcReport:
    cluster: str
    mode: EvcMode | None
    hosts: tuple[EvcHostView, ...] = ()
    warnings: tuple[str, ...] = ()  # what holds but an admin should know (emulated hosts)
    # running VMs of the cluster whose CPU is not the mode's (started before EVC, or moved
    # in live): they keep it until ferry starts them again
    not_at_mode: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pool:
    """A libvirt storage pool on one host: ferry's datastore as that host sees it."""

    host: str
    name: str
    pool_type: str
    path: str | None
    active: bool
    capacity: int
    allocation: int
    available: int
    datastore: str | None = None  # identity shared by pools proved to be the same storage


@dataclass(frozen=True)
class Network:
    host: str
    name: str
    bridge: str | None
    forward_mode: str | None  # None: no <forward>, an internal-only network
    active: bool
    portgroups: tuple[str, ...] = ()

    @property
    def internal_only(self) -> bool:
        return self.forward_mode is None


@dataclass(frozen=True)
class Inventory:
    """A consistent snapshot of everything ferry knows, for pure checks."""

    hosts: dict[str, Host]
    vms: dict[str, VM]  # by UUID: one entry per VM, a migration's incoming copy folded in
    pools: tuple[Pool, ...]
    networks: tuple[Network, ...]

    # Indexed once per snapshot: a VM judged against every host reads each host's
    # pools, networks and VMs, and a scan per read grew with the square of the fleet.
    @cached_property
    def _pools_by_host(self) -> dict[str, list[Pool]]:
        return _by_host(self.pools)

    @cached_property
    def _networks_by_host(self) -> dict[str, list[Network]]:
        return _by_host(self.networks)

    @cached_property
    def _vms_by_host(self) -> dict[str, list[VM]]:
        return _by_host(self.vms.values())

    def pools_on(self, host: str) -> list[Pool]:
        return list(self._pools_by_host.get(host, ()))

    def networks_on(self, host: str) -> list[Network]:
        return list(self._networks_by_host.get(host, ()))

    def vms_on(self, host: str) -> list[VM]:
        return list(self._vms_by_host.get(host, ()))


class _OnHost(Protocol):
    @property
    def host(self) -> str: ...


H = TypeVar("H", bound=_OnHost)


def _by_host(items: Iterable[H]) -> dict[str, list[H]]:
    found: dict[str, list[H]] = {}
    for item in items:
        found.setdefault(item.host, []).append(item)
    return found


# How a moved disk is written on its new datastore: as it was, qcow2 (thin),
# raw with space reserved (thick-lazy), or raw reserved and written by the copy
# (thick-eager).
DISK_FORMATS = ("same", "thin", "thick-lazy", "thick-eager")
# format name -> (file format, preallocation: None | "falloc" | "full"), for all but "same"
TARGET_FORMATS: dict[str, tuple[str, str | None]] = {
    "thin": ("qcow2", None),
    "thick-lazy": ("raw", "falloc"),
    "thick-eager": ("raw", "full"),
}

"""The one seam between ferry and hypervisors.

:class:`HostConnection` is everything ferry asks of a host. The real one,
:mod:`ferry.virt.libvirt_host` (with its parts ``virt/libvirt_*.py``, the only
modules that import libvirt), talks to libvirt; the fake in
:mod:`ferry.virt.fake` stands in for it in unit tests of pure logic.
Implementations raise only :mod:`ferry.errors` exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ferry.checks.facts import CpuFeatures, CpuVerdict, LinkFacts, Reachability
from ferry.model import VM, Network, Pool


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    host_uuid: str
    arch: str
    cpu_vendor: str
    cpu_model: str
    cpus: int
    memory_mib: int
    free_memory_mib: int
    libvirt_version: str
    hypervisor_version: str
    domain_types: tuple[str, ...] = ()  # qemu, kvm: what this host's QEMU offers
    cpu_features: tuple[str, ...] = ()  # the host CPU's features, as libvirt names them


@dataclass(frozen=True)
class GuestPlatform:
    """What a host's QEMU can run, from domcapabilities: ferry picks from here, never guesses."""

    domain_type: str
    machine: str
    cpu_models: tuple[str, ...]  # usable named models, best first


@dataclass(frozen=True)
class DiskCopy:
    """One disk copied during a live migration: its target, and its file on the destination."""

    target: str  # vda, ...
    path: str
    fmt: str  # qcow2 | raw


@dataclass(frozen=True)
class MigrationOptions:
    """How one live migration is asked of libvirt (flags and parameters as data)."""

    dest_uri: str  # how the source's libvirtd reaches the destination's (peer-to-peer)
    migration_address: str | None = None  # where QEMU's migration stream goes
    shared_storage_proven: bool = False  # ferry's probe proved every disk is shared
    allow_postcopy: bool = False
    auto_converge: bool = False
    auto_converge_initial_pct: int | None = None
    auto_converge_increment_pct: int | None = None
    max_downtime_ms: int | None = None
    bandwidth_mibps: int | None = None
    # Shared-nothing: disks copied with the memory into files ferry created in the
    # destination's datastore; the destination's definitions point at those files.
    copy_disks: tuple[DiskCopy, ...] = ()


@dataclass(frozen=True)
class MigrationStats:
    """One sample of libvirt's job statistics for a running migration."""

    elapsed_ms: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    dirty_rate_bps: int = 0
    memory_bps: int = 0
    iteration: int = 0
    downtime_ms: int | None = None
    setup_ms: int | None = None
    postcopy_requests: int = 0
    throttle_pct: int = 0  # auto-converge's current vCPU throttle
    disk_total: int = 0  # shared-nothing: bytes of disk to copy, done and left
    disk_processed: int = 0
    disk_remaining: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_job_stats(cls, raw: dict[str, Any]) -> MigrationStats:
        """Read libvirt's job statistics (``virDomainGetJobStats``'s typed parameters)."""
        page_size = int(raw.get("memory_page_size", 4096) or 4096)
        return cls(
            elapsed_ms=int(raw.get("time_elapsed", 0)),
            memory_total=int(raw.get("memory_total", 0)),
            memory_processed=int(raw.get("memory_processed", 0)),
            memory_remaining=int(raw.get("memory_remaining", 0)),
            data_total=int(raw.get("data_total", 0)),
            data_processed=int(raw.get("data_processed", 0)),
            data_remaining=int(raw.get("data_remaining", 0)),
            dirty_rate_bps=int(raw.get("memory_dirty_rate", 0)) * page_size,
            memory_bps=int(raw.get("memory_bps", 0)),
            iteration=int(raw.get("memory_iteration", 0)),
            downtime_ms=int(raw["downtime"]) if "downtime" in raw else None,
            setup_ms=int(raw["setup_time"]) if "setup_time" in raw else None,
            postcopy_requests=int(raw.get("memory_postcopy_requests", 0)),
            throttle_pct=int(raw.get("auto_converge_throttle", 0)),
            disk_total=int(raw.get("disk_total", 0)),
            disk_processed=int(raw.get("disk_processed", 0)),
            disk_remaining=int(raw.get("disk_remaining", 0)),
        )


@dataclass(frozen=True)
class ImageInfo:
    """A file of a datastore as its host's storage reads it: the format its bytes look
    like (libvirt probes it) and the backing file its header names, if any."""

    path: str
    read_as: str  # raw, qcow2, ...
    backing: str | None = None
    backing_format: str | None = None


@dataclass(frozen=True)
class BlockJob:
    """A running block copy (libvirt's blockJobInfo): bytes done of bytes to do."""

    cur: int
    end: int

    @property
    def ready(self) -> bool:
        return self.end > 0 and self.cur >= self.end


LifecycleCallback = Callable[[str, str, str], None]
"""Called with (host name, VM name, event) when a VM's lifecycle changes.

Events: defined, undefined, started, suspended, resumed, stopped, shutdown,
pmsuspended, crashed, and migrated-away (stopped on the source because a
migration finished: its last event there, since libvirt sends no "undefined"
when a migration removes the source's definition).
"""

CloseCallback = Callable[[str], None]
"""Called with a reason a person reads ("the host stopped answering keepalives")."""

IterationCallback = Callable[[int], None]
"""Called with the pre-copy iteration number when libvirt starts a new one."""


class CpuFunctions(Protocol):
    """libvirt's CPU functions: expand a definition, compute a common baseline."""

    def expand_cpu(self, cpu_xml: str) -> CpuFeatures:
        """The definition's model expanded into every feature it gives a guest."""
        ...

    def baseline_cpu(self, cpu_xmls: Sequence[str]) -> str:
        """A guest CPU definition all of ``cpu_xmls`` can run, migratable features only."""
        ...


class HostConnection(Protocol):
    name: str

    def facts(self) -> HostFacts: ...

    def guest_platform(self, domain_type: str = "qemu") -> GuestPlatform: ...

    def list_vms(self) -> list[VM]: ...

    def get_vm(self, name: str) -> VM | None: ...

    def list_pools(self) -> list[Pool]: ...

    def list_networks(self) -> list[Network]: ...

    def refresh_pool(self, pool: str) -> None: ...

    def create_volume(self, pool: str, name: str, capacity: int, fmt: str,
                      preallocation: str | None = None) -> str:
        """Create a volume and return its path on the host.

        ``preallocation`` None keeps it sparse (thin); "falloc" reserves every
        byte without writing it (thick, lazily zeroed); "full" also writes
        zeros over all of it (thick, eagerly zeroed).
        """
        ...

    def find_volume(self, pool: str, name: str) -> str | None:
        """The volume's path if pool holds it (after a refresh), else None."""
        ...

    def list_volumes(self, pool: str) -> list[str]:
        """The names of the volumes pool holds, read after a refresh (one listing)."""
        ...

    def delete_volume(self, pool: str, name: str) -> None: ...

    def define_vm(self, domain_xml: str) -> None: ...

    def undefine_vm(self, name: str) -> None: ...

    def start_vm(self, name: str) -> None: ...

    def shutdown_vm(self, name: str) -> None: ...

    def destroy_vm(self, name: str) -> None: ...

    def suspend_vm(self, name: str) -> None: ...

    def resume_vm(self, name: str) -> None: ...

    def migrate(
        self,
        name: str,
        options: MigrationOptions,
        on_iteration: IterationCallback | None = None,
    ) -> None:
        """Live-migrate peer-to-peer; blocks until done, raises on failure or abort."""
        ...

    def migration_stats(self, name: str) -> MigrationStats | None: ...

    def completed_migration_stats(self, name: str) -> MigrationStats | None: ...

    def abort_migration(self, name: str) -> None: ...

    def set_max_downtime(self, name: str, ms: int) -> None: ...

    def start_postcopy(self, name: str) -> None: ...

    def subscribe_lifecycle(self, callback: LifecycleCallback) -> None: ...

    # -- facts for the pre-flight checks ---------------------------------
    def compare_cpu(self, domain_type: str, cpu_xml: str) -> CpuVerdict:
        """This host's own verdict on running a guest CPU definition."""
        ...

    # -- CPU definitions (EVC) ----------------------------------------------
    def host_cpu(self, domain_type: str) -> str:
        """The most this host can give a ``domain_type`` guest, as a guest CPU definition."""
        ...

    def vm_cpu(self, name: str) -> str | None:
        """The CPU definition VM ``name`` runs with, as a migration carries it to a host.

        Not the live ``<cpu>``: libvirt adds there what the hypervisor gave
        beyond the model, which another host's model of the same name gives too.
        None when the definition names no CPU.
        """
        ...

    def cpu_functions(self, domain_type: str) -> CpuFunctions:
        """libvirt's CPU functions as this host's hypervisor knows them."""
        ...

    def interface_link(self, name: str) -> LinkFacts | None:
        """A host NIC's state, speed and MTU; None if the host has no such interface."""
        ...

    def block_jobs(self, name: str) -> list[str]:
        """Disk targets of VM ``name`` with a block job (copy, commit, pull) running."""
        ...

    def block_device_present(self, path: str) -> bool:
        """Whether this host has the block device (or its symlink) at ``path``."""
        ...

    def image_info(self, path: str) -> ImageInfo | None:
        """The file at ``path`` as this host's storage reads it; None when no datastore
        (pool) of this host holds it, so ferry never reads it."""
        ...

    # -- storage migration (the seed's Storage VMotion) --------------------
    def volume_size(self, path: str) -> tuple[int, int]:
        """(capacity, allocation) in bytes of the volume at ``path``."""
        ...

    def disk_size(self, name: str, disk: str) -> tuple[int, int]:
        """(guest-visible capacity, bytes allocated on the host) of disk ``disk`` of VM ``name``."""
        ...

    def reserve_volume(self, path: str) -> None:
        """Allocate every byte of a raw volume that is still a hole, keeping its data."""
        ...

    # -- cold migration: whole files ----------------------------------------
    def saved_definition(self, name: str, disks: dict[str, tuple[str, str]]) -> str:
        """VM ``name``'s persistent definition, disks ``{target: (path, format)}`` repointed."""
        ...

    def volume_file_size(self, path: str) -> int:
        """The size in bytes of the volume's file itself (a qcow2 file's, not its disk's)."""
        ...

    def clone_volume(self, source_path: str, source_format: str, pool: str, name: str,
                     fmt: str, preallocation: str | None = None) -> str:
        """Copy or convert a volume of this host into ``pool`` as ``fmt``; the new path.

        The source is read as ``source_format``, what its definition declares. libvirt
        converts a volume in the format it guesses from the bytes and follows the
        backing file it finds there, so this refuses (:class:`~ferry.errors.VirtError`)
        a source the host reads in another format, or one with a backing file.
        """
        ...

    def read_volume(self, path: str) -> Generator[bytes | int, None, None]:
        """The volume file's bytes: data as bytes, holes as their length."""
        ...

    def write_volume(self, path: str, chunks: Iterable[bytes | int]) -> None:
        """Overwrite the volume file from ``chunks`` as :meth:`read_volume` yields them."""
        ...

    def block_copy(self, name: str, disk: str, dest_path: str, dest_format: str,
                   synchronous: bool) -> None:
        """Start mirroring ``disk`` into the existing file ``dest_path``."""
        ...

    def block_job(self, name: str, disk: str) -> BlockJob | None: ...

    def pivot_block_copy(self, name: str, disk: str) -> None: ...

    def cancel_block_copy(self, name: str, disk: str) -> None: ...

    def set_persistent_disk(self, name: str, disk: str, path: str, fmt: str) -> None:
        """Point the persistent definition's ``disk`` at ``path`` (after a pivot)."""
        ...

    def probe_peer(self, peer_uri: str, probe_name: str) -> Reachability:
        """Whether this host's libvirtd can reach the libvirtd at ``peer_uri``.

        Asked of the source about the destination, so it tests the path
        migration uses, from the side that opens it. A definition named
        ``probe_name`` may be left on the peer: the caller removes it there.
        """
        ...

    def alive(self) -> bool:
        """Whether the connection still works (keepalive has not given up on it)."""
        ...

    def on_close(self, callback: CloseCallback) -> None:
        """Have ``callback(reason)`` called once when the host closes this connection
        (its libvirtd stopped, or the keepalive gave up on a dead link)."""
        ...

    def close(self) -> None: ...


Connector = Callable[[str, str], HostConnection]
"""Opens a connection: (host name, URI) -> HostConnection."""

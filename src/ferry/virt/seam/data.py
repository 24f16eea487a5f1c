"""The plain data that crosses the seam: host facts, migration options and statistics,
volumes' image facts, block jobs, and the callbacks a host calls back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
    # QEMU encrypts the memory and disk (NBD) streams; off only where the admin
    # allowed clear text for a pair that cannot do TLS.
    tls: bool = True
    allow_postcopy: bool = False
    auto_converge: bool = False
    auto_converge_initial_pct: int | None = None
    auto_converge_increment_pct: int | None = None
    max_downtime_ms: int | None = None
    bandwidth_mibps: int | None = None
    # Shared-nothing: disks copied with the memory into files ferry created in the
    # destination's datastore; the destination's definitions point at those files.
    copy_disks: tuple[DiskCopy, ...] = ()
    # The same move again, to resume a post-copy the link's failure interrupted.
    postcopy_resume: bool = False


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

"""Plain typed data of jobs: kinds, states, phases, events, what a move asked for,
the resources it records, and the servers that run them.

Immutable and free of IO, like :mod:`ferry.model`; a job's life (which state may
follow which) is :mod:`ferry.jobstates`, its reports :mod:`ferry.reports`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ferry.reports import (
    ColdReport,
    CopyProgress,
    EvacuationProgress,
    EvacuationReport,
    LiveProgress,
    LiveReport,
    Progress,
    Report,
    StorageReport,
)


class JobKind(StrEnum):
    MIGRATE = "migrate"  # live, between hosts, over shared storage
    MIGRATE_WITH_STORAGE = "migrate-with-storage"  # live, disks copied with the memory
    STORAGE_MIGRATE = "storage-migrate"  # live, disks to another datastore, same host
    COLD_MIGRATE = "cold-migrate"  # powered off: files copied, definition moved
    EVACUATE = "evacuate"  # maintenance mode: starts the moves off a host

    @property
    def live_between_hosts(self) -> bool:
        return self in (JobKind.MIGRATE, JobKind.MIGRATE_WITH_STORAGE)

    @property
    def report_type(self) -> type[Report]:
        """The report a job of this kind ends with (:mod:`ferry.reports`)."""
        if self.live_between_hosts:
            return LiveReport
        return {JobKind.STORAGE_MIGRATE: StorageReport, JobKind.COLD_MIGRATE: ColdReport,
                JobKind.EVACUATE: EvacuationReport}[self]

    @property
    def progress_type(self) -> type[Progress]:
        """The progress a running job of this kind shows."""
        if self.live_between_hosts:
            return LiveProgress
        return EvacuationProgress if self is JobKind.EVACUATE else CopyProgress


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Phase(StrEnum):
    """The VMotion steps of the source document, as ferry's engine runs them."""

    REQUESTED = "requested"  # step 1
    STATE_CHECK = "state-check"  # step 2: the VM is in a stable state
    COMPATIBILITY = "compatibility"  # step 3: destination checks
    REGISTER = "register-destination"  # step 4: prepared on the destination
    PRECOPY = "precopy"  # step 5: memory copied, changes tracked
    COPY = "copy-files"  # cold migration: a powered-off VM's files copied
    VERIFY = "verify"  # cold migration: the copies checked against the sources
    SWITCHOVER = "switchover"  # steps 6 and 8: quiesce, final copy
    RESUMED = "resumed-destination"  # steps 7 and 10
    UNREGISTER = "unregister-source"  # step 9
    DONE = "done"
    ROLLBACK = "rollback"
    RECONCILE = "reconcile"  # a server that took the job over judges it against libvirt


class ResourceKind(StrEnum):
    """What ferry creates or frees on a host for a job (``job_resources``)."""

    VOLUME = "volume"  # a target file in a datastore: the VM's, once the move succeeds
    STAGING = "staging"  # a conversion's throw-away file: removed whatever happens
    DEFINITION = "definition"  # the VM's definition on the destination (cold migration)
    SOURCE_VOLUME = "source-volume"  # the VM's old file: freed once it runs on the new one

    @property
    def created_by_ferry(self) -> bool:
        return self is not ResourceKind.SOURCE_VOLUME


class ResourceState(StrEnum):
    INTENDED = "intended"  # recorded before the host is asked to create it
    CREATED = "created"  # the host made it (or, for a source file: it is still the VM's)
    REMOVED = "removed"  # deleted by ferry (or found gone)
    ADOPTED = "adopted"  # it became the VM's own when the move succeeded
    KEPT = "kept"  # a source file the VM still uses after the move failed

    @property
    def settled(self) -> bool:
        return self in (ResourceState.REMOVED, ResourceState.ADOPTED, ResourceState.KEPT)


@dataclass(frozen=True)
class JobResource:
    id: int
    host: str
    kind: ResourceKind
    name: str  # the volume's or the domain's name
    state: ResourceState
    pool: str | None = None  # the datastore of a volume
    path: str | None = None  # the file, once the host made it


@dataclass(frozen=True)
class ServerInfo:
    """A ferry server sharing the database, as the database saw it last."""

    id: str
    name: str
    started_at: float
    seen_at: float  # its last lease renewal (the database's clock)
    alive: bool  # renewed within the lease time
    jobs: int = 0  # unfinished jobs it runs


@dataclass(frozen=True)
class MoveSpec:
    """What a move was asked to do: enough for any server to start or judge it."""

    vm_uuid: str
    dest_host: str | None = None
    dest_datastore: str | None = None
    disk_format: str = "same"
    disks: tuple[str, ...] = ()
    cold: bool = False
    warnings: tuple[dict[str, Any], ...] = ()  # the pre-flight's warnings, for the report
    # A live move's streams over TLS; False only where the pre-flight found the pair
    # cannot do TLS and the admin allowed clear text.
    encrypted: bool = True
    # The convergence policy a live move runs with (engine.policy); a record from before
    # moves chose one ran with the throttling policy, once called "default".
    policy: str = "default"
    # MiB/s a live move between hosts was asked to stay under (None: no limit of its
    # own); the hosts' limits, read when it starts, may lower it.
    bandwidth_mibps: int | None = None


@dataclass(frozen=True)
class JobEvent:
    at: float  # unix time
    phase: Phase
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    vm: str
    source_host: str
    dest_host: str | None
    state: JobState
    phase: Phase
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    progress: Progress | None = None  # the type of its kind: JobKind.progress_type
    report: Report | None = None  # the type of its kind: JobKind.report_type
    events: tuple[JobEvent, ...] = ()
    vm_uuid: str | None = None  # the VM a move holds (one unfinished move per VM); None: evacuation
    spec: MoveSpec | None = None  # None: an evacuation, whose host is source_host
    slot_hosts: tuple[str, ...] = ()  # the hosts whose migration slots it takes
    owner: str | None = None  # the server that runs it (holds its lease)
    cancel_requested: bool = False
    parent_id: str | None = None  # the evacuation that started this move
    resources: tuple[JobResource, ...] = ()
    requested_by: str | None = None  # the user who asked (an evacuation's moves: its asker)

"""What a job reports: its live progress, and the report it ends with, as typed data.

One frozen dataclass per kind of job, and the pieces they share. The engine
builds them, :class:`ferry.engine.jobs.JobHandle` writes them through to the
store, the store keeps them as JSON (:func:`dump`, :func:`load`) and reads them
back by the job's kind (:attr:`ferry.model.JobKind.report_type`), and the API
and the CLI show the same types. Their field names are the JSON keys, so a
row written before a field existed still reads (a missing key is the field's
default, an unknown one is ignored).

Which kinds write which:

- ``migrate``, ``migrate-with-storage``: :class:`LiveReport`, :class:`LiveProgress`
- ``storage-migrate``: :class:`StorageReport`, :class:`CopyProgress`
- ``cold-migrate``: :class:`ColdReport`, :class:`CopyProgress`
- ``evacuate``: :class:`EvacuationReport`, :class:`EvacuationProgress`
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

# -- pieces of a report ---------------------------------------------------------------


@dataclass(frozen=True)
class DiskReport:
    """One moved disk: where from, where to, and how its copy went."""

    source: str | None = None
    target: str = ""
    format: str = ""
    capacity: int = 0
    copied: int = 0
    target_allocation: int | None = None  # None: the target could not be asked
    mode: str = "background"  # background | synchronous (a cold copy has neither)


@dataclass(frozen=True)
class WarningNote:
    """A pre-flight warning the move went ahead with (a finding, as the report keeps it)."""

    code: str = ""
    status: str = "warning"
    message: str = ""
    remedy: str = ""
    objects: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostSighting:
    """What one host said about the VM after a move, or that it did not answer."""

    host: str = ""
    answered: bool = False
    state: str | None = None  # the VM's state there; None: not there (or no answer)
    error: str | None = None  # why the host did not answer


@dataclass(frozen=True)
class Confirmation:
    """What ferry found once hosts that did not answer at a move's end answered again."""

    at: float | None = None  # None: not confirmed in time (``detail`` says so)
    detail: str = ""
    source: HostSighting | None = None
    dest: HostSighting | None = None
    done: tuple[str, ...] = ()  # what the rollback's rule did then


@dataclass(frozen=True)
class GuestCheckReport:
    """The check of the guest a rollback left running on its source
    (:mod:`ferry.engine.revive`)."""

    heard: str = ""  # alive | silent | unheard
    domain_type: str = ""
    kicked: bool = False  # paused and resumed to deliver a lost timer interrupt
    kick_error: str | None = None
    silent_ms: int | None = None
    heartbeat_back: bool | None = None


@dataclass(frozen=True)
class Reconciled:
    """A server's judgement of a job it took over (:mod:`ferry.engine.reconcile`)."""

    found: str = ""  # what the hosts showed
    outcome: str = ""
    actions: tuple[str, ...] = ()
    cleanup: tuple[str, ...] = ()  # what became of the job's recorded resources


# -- reports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TracePoint:
    """One sample of a live copy, for the console's chart of it."""

    elapsed_ms: int = 0
    iteration: int = 0
    memory_remaining: int = 0
    dirty_rate_bps: int = 0
    memory_bps: int = 0
    disk_remaining: int = 0


@dataclass(frozen=True)
class LiveReport:
    """A live migration between hosts (shared storage, or disks copied with the memory)."""

    policy: str | None = None
    policy_actions: tuple[str, ...] = ()
    warnings: tuple[WarningNote, ...] = ()
    total_ms: int | None = None
    downtime_ms: int | None = None  # libvirt's, of a completed migration only
    data_bytes: int | None = None  # None: unknown (no sample was taken)
    data_bytes_basis: str | None = None  # what ``data_bytes`` rests on
    memory_total: int | None = None
    iterations: int | None = None
    setup_ms: int | None = None
    max_dirty_rate_bps: int | None = None
    max_throttle_pct: int | None = None
    shared_storage_proven: bool | None = None
    encrypted: bool | None = None  # QEMU's streams went over TLS; False: clear text allowed
    started_at: float | None = None
    running_on_dest_ms: int | None = None  # when the VM ran again on the destination
    heartbeat_gap_ms: float | None = None  # the lab's heartbeat: the guest's longest silence
    heartbeat_lost: int | None = None
    disks: dict[str, DiskReport] = field(default_factory=dict)  # shared-nothing only
    trace: tuple[TracePoint, ...] = ()  # the copy's samples, thinned (engine.trace)
    outcome: str | None = None  # libvirt said success, the hosts did not agree
    rollback: str | None = None  # where the VM was found after a failure
    unconfirmed: tuple[str, ...] = ()  # hosts that did not answer at the end
    confirmed: Confirmation | None = None
    cleanup_error: str | None = None
    guest_after_rollback: GuestCheckReport | None = None
    reconciled: Reconciled | None = None


@dataclass(frozen=True)
class StorageReport:
    """A Storage VMotion: the disks to another datastore of the same host."""

    total_ms: int | None = None
    heartbeat_gap_ms: float | None = None
    heartbeat_lost: int | None = None
    disks: dict[str, DiskReport] = field(default_factory=dict)
    datastore: str | None = None
    reconciled: Reconciled | None = None


@dataclass(frozen=True)
class ColdReport:
    """A powered-off VM's files copied and verified, and its definition moved."""

    total_ms: int | None = None
    cold: bool = True
    disks: dict[str, DiskReport] = field(default_factory=dict)
    datastore: str | None = None  # None: only the definition moved
    verified_sha256: dict[str, str] = field(default_factory=dict)  # disk -> digest
    transport: str | None = None  # how the bytes crossed the network
    cleanup_error: str | None = None  # moved, but old files were not all freed
    reconciled: Reconciled | None = None


@dataclass(frozen=True)
class EvacuationReport:
    """Maintenance mode: which VMs moved off the host, where, and which did not, why."""

    host: str | None = None
    moved: dict[str, str] = field(default_factory=dict)  # VM -> the host it moved to
    not_moved: dict[str, str] = field(default_factory=dict)  # VM -> why
    jobs: dict[str, str] = field(default_factory=dict)  # VM -> its move's job
    total_ms: int | None = None
    error: str | None = None  # what stopped the evacuation, if something did


Report = LiveReport | StorageReport | ColdReport | EvacuationReport
MoveReport = LiveReport | StorageReport | ColdReport


# -- progress ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveProgress:
    """The latest sample of a live migration's copy (libvirt's job statistics)."""

    phase: str | None = None
    elapsed_ms: int | None = None
    memory_total: int | None = None
    memory_processed: int | None = None
    memory_remaining: int | None = None
    data_processed: int | None = None
    iteration: int | None = None
    dirty_rate_bps: int | None = None
    memory_bps: int | None = None
    throttle_pct: int | None = None
    disk_total: int | None = None  # shared-nothing: QEMU copies the disks first
    disk_processed: int | None = None
    disk_remaining: int | None = None
    trace: tuple[TracePoint, ...] = ()  # the samples so far, thinned (engine.trace)


@dataclass(frozen=True)
class DiskProgress:
    copied: int = 0
    total: int = 0
    remaining: int = 0
    rate_bps: int | None = None  # None: not measured yet
    mode: str | None = None  # background | synchronous; None: a cold copy


@dataclass(frozen=True)
class CopyProgress:
    """A disk move's copy, disk by disk (Storage VMotion, cold migration)."""

    phase: str | None = None
    disks: dict[str, DiskProgress] = field(default_factory=dict)


@dataclass(frozen=True)
class EvacuatedVM:
    host: str | None = None  # where it goes
    state: str = ""  # its move's job state


@dataclass(frozen=True)
class EvacuationProgress:
    phase: str | None = None
    host: str | None = None
    vms: dict[str, EvacuatedVM] = field(default_factory=dict)
    not_moved: dict[str, str] = field(default_factory=dict)  # VM -> why


Progress = LiveProgress | CopyProgress | EvacuationProgress

# -- JSON ---------------------------------------------------------------------------------

T = TypeVar("T")


def dump(value: Report | Progress | None) -> dict[str, Any]:
    """A report or progress as the store keeps it; no report is ``{}``."""
    return asdict(value) if value is not None else {}


def load(kind: type[T], data: object) -> T | None:
    """``data`` (a stored or received JSON object) as ``kind``; ``{}`` is None.

    Written by any earlier ferry: a key it lacks is the field's default, one this
    ferry does not know is ignored, and a value of another type is dropped (the
    field's default) rather than making the whole job unreadable.
    """
    if isinstance(data, kind):
        return data
    if not isinstance(data, dict) or not data:
        return None
    adapter: TypeAdapter[T] = _adapter(kind)
    fields = dict(data)
    while True:
        try:
            return adapter.validate_python(fields)
        except ValidationError as err:
            bad = {e["loc"][0] for e in err.errors() if e["loc"]} & fields.keys()
            if not bad:
                raise
            for key in bad:
                del fields[key]


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(kind: type[Any]) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:  # built once per type: building one costs milliseconds
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]

"""A job as its owner runs it: state, phase events, progress, cancel, resources.

The handle is the one place a job changes; every change is written through to
the store at once, so every server (and a server that takes the job over)
reads the same job. Writes name the owner: a server that lost the job's lease
writes nothing more (the job is another's), and says so in its log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ferry.checks.finding import Finding, finding_dict
from ferry.engine.identity import moving_finding
from ferry.errors import VMBusy
from ferry.job import Job, JobEvent, JobKind, JobState, MoveSpec, Phase, ResourceKind, ResourceState
from ferry.jobstates import check_transition
from ferry.model import MoveHold
from ferry.reports import Progress, Report
from ferry.store.db import Store
from ferry.store.jobs import LostOwnership

log = logging.getLogger(__name__)


def _asked(kind: JobKind, vm: str, source: str, dest: str | None, by: str | None) -> str:
    who = f" by {by}" if by else ""
    if kind is JobKind.EVACUATE:
        return f"evacuation of host {source} requested{who}"
    if dest in (None, source):
        return f"{kind} of {vm} on {source} requested{who}"
    return f"{kind} of {vm} from {source} to {dest} requested{who}"


def _check_type(job: Job, what: str, value: object, expected: type) -> None:
    """A job's report and progress are its kind's: the store reads them back by kind."""
    if not isinstance(value, expected):
        raise TypeError(f"job {job.id} ({job.kind}): {what} is a {type(value).__name__}, "
                        f"not a {expected.__name__}")


class JobHandle:
    def __init__(self, store: Store, job: Job, owner: str | None = None) -> None:
        self._store = store
        self._job = job
        self._owner = owner
        self._lock = threading.Lock()
        self._lost = False
        self.cancel_requested = threading.Event()
        if job.cancel_requested:
            self.cancel_requested.set()
        self._on_cancel: Callable[[], None] | None = None

    @classmethod
    def create(cls, store: Store, kind: JobKind, vm: str, source: str, dest: str | None,
               vm_uuid: str | None = None, spec: MoveSpec | None = None,
               slot_hosts: tuple[str, ...] = (), parent_id: str | None = None,
               requested_by: str | None = None) -> JobHandle:
        """Record a new queued job; a move (``vm_uuid`` given) is refused while its VM has
        another. ``requested_by``: the user who asked for it."""
        now = time.time()
        job = Job(
            id=str(uuid.uuid4()), kind=kind, vm=vm, source_host=source, dest_host=dest,
            state=JobState.QUEUED, phase=Phase.REQUESTED, created_at=now,
            events=(JobEvent(now, Phase.REQUESTED, _asked(kind, vm, source, dest, requested_by)),),
            vm_uuid=vm_uuid, spec=spec, slot_hosts=tuple(dict.fromkeys(slot_hosts)),
            parent_id=parent_id, requested_by=requested_by,
        )
        try:
            store.add_job(job)
        except VMBusy as busy:
            if busy.job is None:
                raise
            holder: Job = busy.job
            hold = MoveHold(holder.dest_host, holder.id, holder.kind, holder.state.value)
            raise VMBusy(f"{kind} of {vm} refused: {busy.message}", holder,
                         [moving_finding(vm, vm_uuid or "", source, hold, kind)]) from None
        return cls(store, job)

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def job(self) -> Job:
        with self._lock:
            return self._job

    @property
    def owner(self) -> str | None:
        return self._owner

    def owned_by(self, owner: str) -> None:
        """This server runs the job from now on (it claimed or took it over)."""
        with self._lock:
            self._owner = owner
            self._job = replace(self._job, owner=owner)

    # -- writing through --------------------------------------------------------
    def _write(self, action: Callable[[], None]) -> bool:
        """Run a store write unless the job is another server's now; False if it is."""
        if self._lost:
            return False
        try:
            action()
        except LostOwnership as err:
            self._lost = True
            log.warning("job %s: %s; this server writes no more of it", self.id, err.message)
            return False
        return True

    def _move(self, state: JobState, **fields: Any) -> None:
        """Change state along the job's allowed transitions, here and in the store."""
        with self._lock:
            check_transition(self.id, self._job.state, state)
            if self._write(lambda: self._store.transition(self.id, self._owner, state,
                                                          **fields)):
                self._job = replace(self._job, state=state, **fields)

    def start(self) -> None:
        self._move(JobState.RUNNING, started_at=time.time())

    def event(self, phase: Phase, message: str, at: float | None = None, **data: Any) -> None:
        event = JobEvent(at if at is not None else time.time(), phase, message, data)
        with self._lock:
            if self._write(lambda: self._store.add_event(self.id, event, self._owner)):
                self._job = replace(self._job, phase=phase, events=(*self._job.events, event))

    def checked(self, findings: list[Finding], warnings: list[Finding], against: str) -> None:
        """The compatibility phase passed: what was checked, and the warnings kept."""
        self.event(Phase.COMPATIBILITY,
                   f"{len(findings)} requirement(s) checked against {against}: no error, "
                   f"{len(warnings)} warning(s)",
                   checked=[f.code for f in findings],
                   warnings=[finding_dict(f) for f in warnings])

    def progress(self, values: Progress) -> None:
        _check_type(self._job, "progress", values, self._job.kind.progress_type)
        with self._lock:
            if self._write(lambda: self._store.update_job(self.id, self._owner,
                                                          progress=values)):
                self._job = replace(self._job, progress=values)

    def finish(self, state: JobState, report: Report | None, error: str | None = None) -> None:
        """End the job in ``state`` with its report (None: it got nowhere to report on)."""
        if report is not None:
            _check_type(self._job, "report", report, self._job.kind.report_type)
        with self._lock:
            if self._job.state is JobState.CANCELLING and state is JobState.SUCCEEDED:
                # A cancel that came too late: the job says what really happened.
                error = None
        self._move(state, report=report, error=error, finished_at=time.time())

    def amend_report(self, **fields: Any) -> None:
        """Set fields of a job's report, also after it finished (a later confirmation);
        a job with no report yet gets one of its kind's type."""
        with self._lock:
            report = replace(self._job.report or self._job.kind.report_type(), **fields)
            if self._write(lambda: self._store.update_job(self.id, self._owner,
                                                          report=report)):
                self._job = replace(self._job, report=report)

    # -- resources: intent before action -----------------------------------------
    def intend(self, host: str, kind: ResourceKind, name: str, pool: str | None = None,
               path: str | None = None) -> int:
        """Record what is about to be created on ``host`` (or, for a source file, what the
        move will free), before the host is asked: any server can clean it up."""
        state = (ResourceState.INTENDED if kind.created_by_ferry else ResourceState.CREATED)
        return self._store.add_resource(self.id, host, kind, name, pool, path, state)

    def resource(self, resource_id: int, state: ResourceState, path: str | None = None) -> None:
        self._store.set_resource(resource_id, state, path)

    def stored(self) -> Job:
        """The job as the store holds it, with its events and resources."""
        return self._store.job(self.id)

    # -- cancelling ----------------------------------------------------------
    def on_cancel(self, action: Callable[[], None] | None) -> None:
        """What cancelling does right now (abort the libvirt job), or None once too late."""
        with self._lock:
            self._on_cancel = action

    def notice_cancel(self) -> None:
        """A user's cancel, recorded in the store (through any server), reaches the owner."""
        with self._lock:
            if self.cancel_requested.is_set():
                return
            self.cancel_requested.set()
            if self._job.state is JobState.RUNNING:
                self._job = replace(self._job, state=JobState.CANCELLING,
                                    cancel_requested=True)
            action = self._on_cancel
        if action is not None:
            action()

"""A running job: its state, phase events with timestamps, progress, and cancellation.

The handle is the one place a job changes; every change is written through to
the store so the API (another thread) and a later server see the same job.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ferry.checks.finding import Finding, finding_dict
from ferry.engine.identity import moving_finding
from ferry.errors import InputError, VMBusy
from ferry.model import Job, JobEvent, JobState, MoveHold, Phase
from ferry.store.db import Store


class JobHandle:
    def __init__(self, store: Store, job: Job) -> None:
        self._store = store
        self._job = job
        self._lock = threading.Lock()
        self.cancel_requested = threading.Event()
        self._on_cancel: Callable[[], None] | None = None

    @classmethod
    def create(cls, store: Store, kind: str, vm: str, source: str, dest: str | None,
               vm_uuid: str | None = None) -> JobHandle:
        """Record a new job; a move (``vm_uuid`` given) is refused while its VM has another."""
        now = time.time()
        if kind == "evacuate":
            asked = f"evacuation of host {source} requested"
        elif dest in (None, source):
            asked = f"{kind} of {vm} on {source} requested"
        else:
            asked = f"{kind} of {vm} from {source} to {dest} requested"
        job = Job(
            id=str(uuid.uuid4()), kind=kind, vm=vm, source_host=source, dest_host=dest,
            state=JobState.QUEUED, phase=Phase.REQUESTED.value, created_at=now,
            events=(JobEvent(now, Phase.REQUESTED.value, asked),), vm_uuid=vm_uuid,
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

    def _save(self, job: Job) -> None:
        self._job = job
        self._store.update_job(job)

    def start(self) -> None:
        with self._lock:
            self._save(replace(self._job, state=JobState.RUNNING, started_at=time.time()))

    def event(self, phase: Phase, message: str, at: float | None = None, **data: Any) -> None:
        event = JobEvent(at if at is not None else time.time(), phase.value, message, data)
        with self._lock:
            self._store.add_event(self._job.id, event)
            self._save(replace(self._job, phase=phase.value,
                               events=(*self._job.events, event)))

    def checked(self, findings: list[Finding], warnings: list[Finding], against: str) -> None:
        """The compatibility phase passed: what was checked, and the warnings kept."""
        self.event(Phase.COMPATIBILITY,
                   f"{len(findings)} requirement(s) checked against {against}: no error, "
                   f"{len(warnings)} warning(s)",
                   checked=[f.code for f in findings],
                   warnings=[finding_dict(f) for f in warnings])

    def progress(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._save(replace(self._job, progress=values))

    def finish(self, state: JobState, report: dict[str, Any], error: str | None = None) -> None:
        with self._lock:
            self._save(replace(self._job, state=state, report=report, error=error,
                               finished_at=time.time()))

    def amend_report(self, **fields: Any) -> None:
        """Add to a job's report, also after it finished (a later confirmation)."""
        with self._lock:
            self._save(replace(self._job, report={**self._job.report, **fields}))

    def on_cancel(self, action: Callable[[], None] | None) -> None:
        """What cancelling does right now (abort the libvirt job), or None once too late."""
        with self._lock:
            self._on_cancel = action

    def cancel(self) -> Job:
        with self._lock:
            job = self._job
            if job.state.finished:
                raise InputError(f"job {job.id} is already {job.state.value}")
            action = self._on_cancel
            self.cancel_requested.set()
            if job.state is not JobState.QUEUED:
                self._save(replace(job, state=JobState.CANCELLING))
        if action is not None:
            action()
        return self.job

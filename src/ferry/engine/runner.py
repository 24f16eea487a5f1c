"""Running jobs: moves wait for their hosts' migration slots, then run in a thread each.

The control plane hands over a job and what runs it; this module queues it on
the per-host slots (:mod:`ferry.engine.scheduler`), starts it when it may,
keeps a bug in a job from leaving it "running" forever, refreshes the hosts it
touched, and frees its slots. Coordinating jobs (an evacuation) run at once
and take no slot: the moves they start take theirs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ferry.engine.jobs import JobHandle
from ferry.engine.scheduler import SlotScheduler
from ferry.errors import FerryError, InputError
from ferry.model import Job, JobState, Phase
from ferry.store.db import Store

log = logging.getLogger(__name__)

JobBody = Callable[[JobHandle], None]


class JobRunner:
    def __init__(self, store: Store, slot_limit: Callable[[str], int],
                 refresh: Callable[[str], object]) -> None:
        self._store = store
        self._slot_limit = slot_limit
        self._refresh = refresh
        self._lock = threading.Lock()
        self._jobs: dict[str, JobHandle] = {}
        self._scheduler = SlotScheduler(slot_limit)

    def launch(self, handle: JobHandle, run: JobBody, hosts: tuple[str, ...]) -> Job:
        """Queue a move for a slot on each of ``hosts``; it starts by itself."""
        with self._lock:
            self._jobs[handle.id] = handle
        self._scheduler.submit(handle.id, hosts, lambda: self._begin(handle, run, hosts))
        if handle.id in self._scheduler.waiting():
            busy = self._scheduler.running_on()
            handle.event(Phase.REQUESTED, "queued: waiting for a migration slot on " + ", ".join(
                f"{h} ({busy.get(h, 0)} of {self._slot_limit(h)} in use)"
                for h in dict.fromkeys(hosts)))
        return handle.job

    def coordinate(self, handle: JobHandle, run: JobBody, hosts: tuple[str, ...]) -> Job:
        """Start a job that only starts other jobs, at once and without a slot."""
        with self._lock:
            self._jobs[handle.id] = handle
        handle.start()
        def work() -> None:
            self._run(run, handle)
            self._refresh_all(hosts)

        threading.Thread(target=work, daemon=True, name=f"job-{handle.id[:8]}").start()
        return handle.job

    def cancel(self, job_id: str) -> Job:
        with self._lock:
            handle = self._jobs.get(job_id)
        if handle is None:
            job = self._store.job(job_id)
            if job.state.finished:
                raise InputError(f"job {job_id} is already {job.state.value}")
            raise InputError(f"job {job_id} is not run by this server")
        if self._scheduler.withdraw(job_id):
            handle.event(Phase.ROLLBACK, "cancelled while waiting for a slot: nothing was done")
            handle.finish(JobState.CANCELLED, {}, "cancelled before it started")
            return self._store.job(job_id)
        handle.cancel()
        return self._store.job(job_id)

    def unfinished(self) -> list[Job]:
        with self._lock:
            return [h.job for h in self._jobs.values() if not h.job.state.finished]

    def slots_taken(self) -> dict[str, int]:
        """host -> moves running there, plus the moves already waiting in line for it."""
        taken = self._scheduler.running_on()
        with self._lock:
            jobs = dict(self._jobs)
        for job_id in self._scheduler.waiting():
            job = jobs[job_id].job
            for host in {job.source_host, job.dest_host} - {None}:
                assert host is not None
                taken[host] = taken.get(host, 0) + 1
        return taken

    def _begin(self, handle: JobHandle, run: JobBody, hosts: tuple[str, ...]) -> None:
        handle.start()

        def work() -> None:
            try:
                self._run(run, handle)
            finally:
                # The slots go first: the next move in line need not wait for the
                # refresh, which only updates ferry's own view of the hosts.
                self._scheduler.finished(handle.id)
                self._refresh_all(hosts)

        threading.Thread(target=work, daemon=True, name=f"job-{handle.id[:8]}").start()

    def _run(self, run: JobBody, handle: JobHandle) -> None:
        try:
            run(handle)
        except Exception as err:  # a bug must not leave the job "running" forever
            log.exception("job %s of %s crashed", handle.id, handle.job.vm)
            handle.event(Phase.ROLLBACK, f"ferry failed internally: {err!r}; check where "
                         f"{handle.job.vm} is with 'ferry vm show {handle.job.vm}'")
            handle.finish(JobState.FAILED, handle.job.report, f"internal error: {err!r}")

    def _refresh_all(self, hosts: tuple[str, ...]) -> None:
        for host in sorted(set(hosts)):
            try:
                self._refresh(host)
            except FerryError:
                continue  # the next refresh shows the host's state

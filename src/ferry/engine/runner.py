"""This server's share of the jobs: it claims queued moves, runs them, keeps its leases,
and takes over the jobs of servers that stopped.

Every job lives in the store. A move is recorded queued with the hosts whose
slots it takes; each server, every ``poll_s``, claims the moves that may start
(the store decides across servers, :mod:`ferry.store.coordination`) and runs
each in a thread. A server renews the lease of every job it runs; a job whose
lease ran out (its server died, or stopped) is taken over by one server and
judged against libvirt (:mod:`ferry.engine.reconcile`). A cancel asked of any
server is recorded in the store and reaches the job's owner.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from ferry.engine.jobs import JobHandle
from ferry.errors import FerryError
from ferry.job import Job, JobState, Phase
from ferry.store.db import Store

log = logging.getLogger(__name__)

JobBody = Callable[[JobHandle], None]

# A dead server's jobs are taken over this long after its last renewal, at most.
LEASE_S = 10.0
RENEW_S = 2.0  # well inside the lease: two renewals may fail before it ends
POLL_S = 0.5  # how soon a free slot or a cancel through another server is seen


class JobRunner:
    def __init__(self, store: Store, body_for: Callable[[Job], JobBody],
                 reconcile: Callable[[JobHandle], None], refresh: Callable[[str], object],
                 name: str | None = None, lease_s: float = LEASE_S,
                 poll_s: float = POLL_S) -> None:
        self._store = store
        self._body_for = body_for
        self._reconcile = reconcile
        self._refresh = refresh
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._jobs: dict[str, JobHandle] = {}
        self._wakeup = threading.Event()
        self._closed = threading.Event()
        self.server_id = store.register_server(name or socket.gethostname())
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    # -- asked by the control plane ------------------------------------------
    def launch(self, handle: JobHandle) -> Job:
        """A move recorded queued: it starts by itself once its hosts have a free slot."""
        self._claim()
        job = self._store.job(handle.id, detail=False)
        if job.state is JobState.QUEUED:
            running, _ = self._store.slot_usage()
            limits = self._store.slot_limits(set(job.slot_hosts))
            handle.event(Phase.REQUESTED, "queued: waiting for a migration slot on " + ", ".join(
                f"{h} ({running.get(h, 0)} of {limits.get(h, '?')} in use)"
                for h in job.slot_hosts))
        return self._store.job(handle.id)

    def coordinate(self, handle: JobHandle, run: JobBody) -> Job:
        """Start a job that only starts other jobs (an evacuation): at once, no slot."""
        self._store.own(handle.id, self.server_id, self._lease_s)
        handle.owned_by(self.server_id)
        handle.start()
        self._run_in_thread(handle, run, ())
        return handle.job

    def cancel(self, job_id: str) -> Job:
        job = self._store.request_cancel(job_id)
        with self._lock:
            handle = self._jobs.get(job_id)
        if handle is not None:
            handle.notice_cancel()
        self._wakeup.set()
        return job

    def slots_taken(self) -> dict[str, int]:
        """host -> moves running there, plus the moves already waiting in line for it."""
        running, waiting = self._store.slot_usage()
        return {h: running.get(h, 0) + waiting.get(h, 0) for h in {*running, *waiting}}

    def close(self) -> None:
        self._closed.set()
        self._wakeup.set()
        self._thread.join(5)
        try:
            self._store.stop_server(self.server_id)
        except Exception:  # the database may be gone already; the leases then run out
            log.warning("could not release this server's leases", exc_info=True)

    # -- the loop --------------------------------------------------------------
    def _loop(self) -> None:
        renewed = taken_over = 0.0
        while not self._closed.is_set():
            try:
                now = time.monotonic()
                if now - renewed >= RENEW_S:
                    self._store.renew(self.server_id, self._lease_s)
                    renewed = now
                self._claim()
                self._deliver_cancels()
                if now - taken_over >= RENEW_S:
                    self._take_over()
                    taken_over = now
            except Exception:  # the database restarting must not end this server's loop
                log.exception("job runner loop")
            self._wakeup.wait(self._poll_s)
            self._wakeup.clear()

    def _claim(self) -> None:
        for job in self._store.claim_startable(self.server_id, self._lease_s):
            # As the claim left it: running, and ours.
            handle = JobHandle(self._store, replace(job, state=JobState.RUNNING),
                               self.server_id)
            try:
                body = self._body_for(job)
            except FerryError as err:
                handle.event(Phase.ROLLBACK, f"could not start: {err.message}; nothing was done")
                handle.finish(JobState.FAILED, None, err.message)
                continue
            self._run_in_thread(handle, body, job.slot_hosts)

    def _take_over(self) -> None:
        for job in self._store.take_over_expired(self.server_id, self._lease_s):
            handle = JobHandle(self._store, job, self.server_id)
            log.info("took over job %s of %s from server %s", job.id, job.vm, job.owner)
            self._run_in_thread(handle, self._reconcile, job.slot_hosts)

    def _deliver_cancels(self) -> None:
        for job_id in self._store.cancels_for(self.server_id):
            with self._lock:
                handle = self._jobs.get(job_id)
            if handle is not None:
                handle.notice_cancel()

    def _run_in_thread(self, handle: JobHandle, run: JobBody, hosts: tuple[str, ...]) -> None:
        with self._lock:
            self._jobs[handle.id] = handle

        def work() -> None:
            try:
                self._run(run, handle)
            finally:
                with self._lock:
                    self._jobs.pop(handle.id, None)
                self._wakeup.set()  # its slots are free: the next move in line may start
                self._refresh_all(hosts)

        threading.Thread(target=work, daemon=True, name=f"job-{handle.id[:8]}").start()

    def _run(self, run: JobBody, handle: JobHandle) -> None:
        try:
            run(handle)
        except Exception as err:  # a bug must not leave the job "running" forever
            log.exception("job %s of %s crashed", handle.id, handle.job.vm)
            handle.event(Phase.ROLLBACK, f"ferry failed internally: {err!r}; check where "
                         f"{handle.job.vm} is with 'ferry vm show {handle.job.vm}'")
            if not handle.job.state.finished:
                handle.finish(JobState.FAILED, handle.job.report, f"internal error: {err!r}")

    def _refresh_all(self, hosts: tuple[str, ...]) -> None:
        for host in sorted(set(hosts)):
            try:
                self._refresh(host)
            except FerryError:
                continue  # the next refresh shows the host's state

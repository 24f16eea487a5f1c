"""An evacuation's bookkeeping over stub callables: placement order, report, cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from preflight_fixtures import host, vm

from ferry.checks.finding import Finding
from ferry.engine.jobs import JobHandle
from ferry.engine.maintenance import Evacuation
from ferry.errors import InputError
from ferry.job import Job, JobKind, JobState, Phase
from ferry.model import VM
from ferry.reports import EvacuationReport
from ferry.store.db import Store


class Moves:
    """Child jobs: the first move runs, the rest wait for a slot until cancelled."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.release = threading.Event()

    def start(self, target_vm: VM, dest: str, _findings: list[Finding]) -> Job:
        name = target_vm.name
        state = JobState.RUNNING if not self.jobs else JobState.QUEUED
        job = Job(id=f"job-{name}", kind=JobKind.MIGRATE, vm=name, source_host="host1",
                  dest_host=dest, state=state, phase=Phase.REQUESTED, created_at=0.0)
        self.jobs[job.id] = job
        return job

    def job_of(self, job_id: str) -> Job:
        job = self.jobs[job_id]
        if job.state is JobState.RUNNING and self.release.is_set():
            job = self.jobs[job_id] = replace(job, state=JobState.SUCCEEDED)
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.jobs[job_id]
        if job.state is not JobState.QUEUED:
            raise InputError(f"job {job_id} is {job.state.value}")
        self.jobs[job_id] = replace(job, state=JobState.CANCELLED, error="cancelled before "
                                    "it started")
        return self.jobs[job_id]


def test_cancelling_withdraws_the_queued_moves_and_lets_the_running_one_finish(
        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    moves = Moves()
    vms = [vm(name=f"v{i}", host="host1", memory_kib=2**19 * i) for i in (1, 2, 3)]

    def judge(_vm: VM, _cold: bool) -> Callable[[str], list[Finding]]:
        return lambda _target: []

    evacuation = Evacuation(host="host1", vms=vms, targets=[host("host2")], all_vms=vms,
                            judge=judge, start=moves.start, job_of=moves.job_of,
                            cancel=moves.cancel, poll_seconds=0.01)
    handle = JobHandle.create(store, JobKind.EVACUATE, "host1", "host1", None)
    handle.start()
    worker = threading.Thread(target=evacuation.run, args=(handle,))
    worker.start()
    deadline = time.monotonic() + 10
    while len(moves.jobs) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    store.request_cancel(handle.id)  # while v3 (biggest, placed first) runs, v2, v1 wait
    handle.notice_cancel()
    moves.release.set()
    worker.join(10)
    job = store.job(handle.id)
    assert job.state is JobState.CANCELLED
    assert isinstance(job.report, EvacuationReport)
    assert job.report.moved == {"v3": "host2"}
    assert set(job.report.not_moved) == {"v1", "v2"}
    assert "cancelled before it started" in job.report.not_moved["v2"]
    assert moves.jobs["job-v2"].state is JobState.CANCELLED
    assert any("queued move(s) withdrawn" in e.message for e in job.events)

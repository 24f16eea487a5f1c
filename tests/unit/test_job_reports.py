"""A job's report and progress: typed by its kind in the store, the API and the CLI,
and rows written before a field existed (or after one was dropped) still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from ferry.api.schemas import JobOut
from ferry.cli import render_jobs
from ferry.cli.console import to_text
from ferry.cli.maintenance import evacuation_report
from ferry.engine.jobs import JobHandle
from ferry.job import Job, JobKind, JobState, Phase
from ferry.reports import (
    ColdReport,
    Confirmation,
    CopyProgress,
    DiskProgress,
    DiskReport,
    EvacuatedVM,
    EvacuationProgress,
    EvacuationReport,
    LiveProgress,
    LiveReport,
    Progress,
    Report,
    StorageReport,
    dump,
)
from ferry.store.db import Store
from ferry.store.schema import jobs_table

DISK = DiskReport("/pool/web1.img", "/fast/web1-vda.qcow2", "qcow2", 2**30, 2**30, 2**29,
                  "synchronous")
BY_KIND: dict[JobKind, tuple[Report, Progress]] = {
    JobKind.MIGRATE: (LiveReport(total_ms=900, downtime_ms=31, iterations=4,
                                 unconfirmed=("host2",)),
                      LiveProgress(phase="precopy", memory_total=2**30, memory_processed=2**29)),
    JobKind.MIGRATE_WITH_STORAGE: (LiveReport(total_ms=5000, disks={"vda": DISK}),
                                   LiveProgress(disk_total=2**30, disk_processed=2**20)),
    JobKind.STORAGE_MIGRATE: (StorageReport(total_ms=700, disks={"vda": DISK},
                                            datastore="fast", heartbeat_lost=0),
                              CopyProgress("precopy", {"vda": DiskProgress(
                                  2**20, 2**30, 2**30 - 2**20, 5 * 2**20, "background")})),
    JobKind.COLD_MIGRATE: (ColdReport(total_ms=800, disks={"vda": DISK}, datastore="fast",
                                      verified_sha256={"vda": "ab" * 32}),
                           CopyProgress("copy-files", {"vda": DiskProgress(1, 2, 1)})),
    JobKind.EVACUATE: (EvacuationReport(host="host1", moved={"web1": "host2"},
                                        not_moved={"db1": "no host has room"},
                                        jobs={"web1": "job-2"}, total_ms=4000),
                       EvacuationProgress("evacuating", "host1",
                                          {"web1": EvacuatedVM("host2", "running")})),
}


def _job(kind: JobKind, report: Report | None = None, progress: Progress | None = None,
         state: JobState = JobState.SUCCEEDED) -> Job:
    return Job(id=f"job-{kind}", kind=kind, vm="web1", source_host="host1",
               dest_host="host2", state=state, phase=Phase.DONE, created_at=1000.0,
               report=report, progress=progress)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'ferry.db'}")


@pytest.mark.parametrize("kind", list(JobKind))
def test_each_kind_reads_back_its_own_types(store: Store, kind: JobKind) -> None:
    report, progress = BY_KIND[kind]
    store.add_job(_job(kind, report, progress))
    job = store.job(f"job-{kind}")
    assert type(job.report) is kind.report_type and job.report == report
    assert type(job.progress) is kind.progress_type and job.progress == progress


def test_a_storage_and_a_cold_report_of_the_same_keys_read_as_their_kinds(
        store: Store) -> None:
    # The kind, not the keys, says which type a report is.
    for kind in (JobKind.STORAGE_MIGRATE, JobKind.COLD_MIGRATE):
        store.add_job(_job(kind))
        _write_raw(store, f"job-{kind}", report={"total_ms": 5})
    assert store.job("job-storage-migrate").report == StorageReport(total_ms=5)
    assert store.job("job-cold-migrate").report == ColdReport(total_ms=5)


def _write_raw(store: Store, job_id: str, **columns: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(
            **{k: json.dumps(v) for k, v in columns.items()}))


def test_a_row_of_another_ferry_version_still_reads(store: Store) -> None:
    store.add_job(_job(JobKind.MIGRATE))
    _write_raw(store, "job-migrate", report={
        "total_ms": 9000, "downtime_ms": 31,
        "a_field_of_a_newer_ferry": {"x": 1},  # unknown: ignored
        "iterations": "many",  # not a number: dropped, not the whole job unreadable
        "disks": {"vda": {"source": "/a", "target": "/b", "mode": "background",
                          "some_new_detail": True}},
        "confirmed": {"at": None, "detail": "not confirmed within 600 s"}},
        progress={})
    job = store.job("job-migrate")
    assert job.report == LiveReport(
        total_ms=9000, downtime_ms=31, disks={"vda": DiskReport("/a", "/b")},
        confirmed=Confirmation(at=None, detail="not confirmed within 600 s"))
    assert job.progress is None


def test_the_stored_json_keeps_the_keys_the_cli_and_scripts_read(store: Store) -> None:
    report, progress = BY_KIND[JobKind.EVACUATE]
    store.add_job(_job(JobKind.EVACUATE, report, progress))
    with store.engine.connect() as conn:
        row = conn.execute(jobs_table.select()).mappings().one()
    stored = json.loads(row["report"])
    assert stored["moved"] == {"web1": "host2"} and stored["not_moved"]["db1"]
    assert json.loads(row["progress"])["vms"] == {"web1": {"host": "host2", "state": "running"}}


def test_a_report_of_another_kind_is_refused_and_nothing_is_written(store: Store) -> None:
    handle = JobHandle.create(store, JobKind.STORAGE_MIGRATE, "web1", "host1", None)
    handle.start()
    with pytest.raises(TypeError, match="StorageReport"):
        handle.finish(JobState.SUCCEEDED, LiveReport(total_ms=1))
    with pytest.raises(TypeError, match="CopyProgress"):
        handle.progress(LiveProgress(iteration=1))
    job = store.job(handle.id)
    assert job.state is JobState.RUNNING and job.report is None and job.progress is None


def test_a_later_amendment_keeps_the_rest_of_the_report(store: Store) -> None:
    handle = JobHandle.create(store, JobKind.MIGRATE, "web1", "host1", "host2")
    handle.start()
    handle.finish(JobState.FAILED, LiveReport(total_ms=500, rollback="web1 runs on host1"),
                  "link down")
    handle.amend_report(unconfirmed=())
    assert store.job(handle.id).report == LiveReport(total_ms=500, rollback="web1 runs on host1")
    with pytest.raises(TypeError):
        handle.amend_report(no_such_field=1)


@pytest.mark.parametrize("kind", list(JobKind))
def test_the_api_json_is_the_stored_json_and_the_cli_reads_it_typed(kind: JobKind) -> None:
    report, progress = BY_KIND[kind]
    sent = JobOut.model_validate(_job(kind, report, progress), from_attributes=True)
    body = json.loads(sent.model_dump_json())
    assert body["report"] == json.loads(json.dumps(dump(report)))  # as the store keeps it
    assert body["progress"] == json.loads(json.dumps(dump(progress)))
    received = JobOut.model_validate_json(sent.model_dump_json())
    assert received.report == report and received.progress == progress


def test_a_job_with_nothing_to_report_shows_none() -> None:
    out = JobOut.model_validate_json(json.dumps({
        "id": "j", "kind": "migrate", "vm": "web1", "source_host": "host1", "dest_host": None,
        "state": "failed", "phase": "rollback", "created_at": 0.0, "report": {},
        "progress": {}}))
    assert out.report is None and out.progress is None
    assert "total time     -" in to_text(render_jobs.job_report(out))


def _out(kind: JobKind, state: JobState = JobState.SUCCEEDED) -> JobOut:
    report, progress = BY_KIND[kind]
    return JobOut.model_validate(_job(kind, report, progress, state), from_attributes=True)


def test_the_cli_shows_each_kinds_progress() -> None:
    line = render_jobs.progress_line(_out(JobKind.STORAGE_MIGRATE, JobState.RUNNING))
    assert line == ("precopy  vda 1.0 MiB/1.0 GiB at 5.0 MiB/s (left 1023 MiB, background)")
    line = render_jobs.progress_line(_out(JobKind.EVACUATE, JobState.RUNNING))
    assert line == "evacuating  0/1 moved, 1 moving, 0 queued, 0 stuck"
    line = render_jobs.progress_line(_out(JobKind.MIGRATE_WITH_STORAGE, JobState.RUNNING))
    assert line.startswith("done  disks 1.0 MiB/1.0 GiB")  # no phase sampled: the job's


def test_the_cli_report_shows_disks_and_the_copy_mode_only_of_live_copies() -> None:
    text = to_text(render_jobs.job_report(_out(JobKind.STORAGE_MIGRATE)))
    assert ("vda: /pool/web1.img -> /fast/web1-vda.qcow2 (qcow2, 1.0 GiB, 512 MiB allocated, "
            "synchronous copy)") in text
    assert "heartbeat gap  -, lost 0" in text
    text = to_text(render_jobs.job_report(_out(JobKind.COLD_MIGRATE)))
    assert "(qcow2, 1.0 GiB, 512 MiB allocated)" in text and "copy)" not in text
    text = to_text(render_jobs.job_report(_out(JobKind.MIGRATE)))
    assert "downtime       31 ms (libvirt)" in text and "not confirmed  host2" in text
    text = to_text(evacuation_report(_out(JobKind.EVACUATE)))
    assert "moved      web1 -> host2" in text and "NOT MOVED  db1: no host has room" in text
    assert text.startswith("Evacuation of host1: SUCCEEDED in 4.0 s")

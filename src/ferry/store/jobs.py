"""Jobs, their events and the resources they record, as rows every server reads.

A job's state changes only along :data:`ferry.jobstates.TRANSITIONS`, and the
rule is in the SQL: an update names the states it may leave, and its owner,
so a server that lost a job's lease (another took it over) writes nothing.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from ferry import reports
from ferry.errors import InputError, NotFound, RefusedError, VMBusy
from ferry.job import (
    Job,
    JobEvent,
    JobKind,
    JobResource,
    JobState,
    MoveSpec,
    Phase,
    ResourceKind,
    ResourceState,
)
from ferry.jobstates import IllegalTransition, check_transition, past_no_return, predecessors
from ferry.jobstates import too_late_message as _too_late
from ferry.store.schema import UNFINISHED, events_table, job_resources_table, jobs_table


class LostOwnership(InputError):
    """This server no longer owns the job: another took it over when its lease ran out."""


class JobRecords:
    engine: Engine
    _lock: threading.Lock

    # -- creating and reading ----------------------------------------------
    def add_job(self, job: Job) -> None:
        """Record a new job; VMBusy when its VM already has an unfinished one.

        The unique index decides, so two requests racing on one server or on two
        servers cannot both insert; the loser is told which job holds the VM.
        """
        for _attempt in (1, 2):
            try:
                with self._lock, self.engine.begin() as conn:
                    conn.execute(insert(jobs_table).values(**_job_row(job)))
                    for event in job.events:
                        conn.execute(insert(events_table).values(**_event_row(job.id, event)))
                return
            except IntegrityError:
                if job.vm_uuid is None:
                    raise
                holder = self.unfinished_job(job.vm_uuid)
                if holder is not None:
                    raise VMBusy(f"VM {job.vm} is already in a move: job {holder.id} "
                                 f"({holder.kind}, {holder.state.value})", holder) from None
                # The holder ended between the insert and the look-up: try once more.
        raise VMBusy(f"VM {job.vm} is in another move that keeps changing; try again", None)

    def unfinished_job(self, vm_uuid: str) -> Job | None:
        """The job that holds VM ``vm_uuid`` now (at most one: the index sees to it)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(
                jobs_table.c.vm_uuid == vm_uuid,
                jobs_table.c.state.in_(UNFINISHED))).mappings().first()
            return job_from_row(row) if row is not None else None

    def unfinished_jobs(self) -> list[Job]:
        """Every job that holds a VM now, by any server sharing this database."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs_table).where(
                jobs_table.c.vm_uuid.is_not(None),
                jobs_table.c.state.in_(UNFINISHED))).mappings()
            return [job_from_row(r) for r in rows]

    def job(self, job_id: str, detail: bool = True) -> Job:
        """The job; with its events and resources unless ``detail`` is False."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
            if row is None:
                raise NotFound(f"no job with id {job_id!r}")
            if not detail:
                return job_from_row(row)
            events = conn.execute(
                select(events_table).where(events_table.c.job_id == job_id)
                .order_by(events_table.c.id)).mappings()
            resources = conn.execute(
                select(job_resources_table).where(job_resources_table.c.job_id == job_id)
                .order_by(job_resources_table.c.id)).mappings()
            return replace(job_from_row(row), events=tuple(_event_from_row(e) for e in events),
                           resources=tuple(_resource_from_row(r) for r in resources))

    def jobs(self, limit: int = 100) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs_table).order_by(jobs_table.c.created_at.desc()).limit(limit)).mappings()
            return [job_from_row(r) for r in rows]

    def current_jobs(self, limit: int) -> list[Job]:
        """Every unfinished job, then the ``limit`` most recent others; newest first in each."""
        newest = jobs_table.c.created_at.desc()
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(jobs_table).where(
                jobs_table.c.state.in_(UNFINISHED)).order_by(newest)).mappings())
            rows += conn.execute(select(jobs_table).where(
                jobs_table.c.state.not_in(UNFINISHED)).order_by(newest).limit(limit)).mappings()
            return [job_from_row(r) for r in rows]

    def children(self, parent_id: str) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs_table).where(jobs_table.c.parent_id == parent_id)
                                .order_by(jobs_table.c.created_at)).mappings()
            return [job_from_row(r) for r in rows]

    # -- changing (by the owner) -------------------------------------------
    def update_job(self, job_id: str, owner: str | None, **fields: Any) -> None:
        """Write a job's phase, progress, report...; LostOwnership if ``owner`` no longer
        holds it. The state is not among them: :meth:`transition` changes it."""
        values = _encode(fields)
        with self._lock, self.engine.begin() as conn:
            query = update(jobs_table).where(jobs_table.c.id == job_id)
            if owner is not None:
                query = query.where(jobs_table.c.owner == owner)
            if conn.execute(query.values(**values)).rowcount == 0:
                raise self._why_not(conn, job_id, owner, None)

    def transition(self, job_id: str, owner: str | None, new: JobState, **fields: Any) -> None:
        """Move a job to ``new`` from a state allowed to reach it; IllegalTransition if the
        job is in another state, LostOwnership if ``owner`` no longer holds it."""
        values = {**_encode(fields), "state": new.value}
        if new.finished:
            values.setdefault("finished_at", time.time())
        with self._lock, self.engine.begin() as conn:
            query = update(jobs_table).where(
                jobs_table.c.id == job_id,
                jobs_table.c.state.in_([s.value for s in predecessors(new)]))
            if owner is not None:
                query = query.where(jobs_table.c.owner == owner)
            if conn.execute(query.values(**values)).rowcount == 0:
                raise self._why_not(conn, job_id, owner, new)

    def _why_not(self, conn: Connection, job_id: str, owner: str | None,
                 new: JobState | None) -> Exception:
        row = conn.execute(select(jobs_table.c.state, jobs_table.c.owner)
                           .where(jobs_table.c.id == job_id)).first()
        if row is None:
            return NotFound(f"no job with id {job_id!r}")
        if owner is not None and row.owner != owner:
            return LostOwnership(f"job {job_id} is now run by server {row.owner}")
        if new is not None:
            check_transition(job_id, JobState(row.state), new)
        return IllegalTransition(f"job {job_id} could not be updated ({row.state})")

    def add_event(self, job_id: str, event: JobEvent, owner: str | None = None) -> None:
        """Record an event, the job's phase becoming the event's; LostOwnership, and
        nothing recorded, if ``owner`` no longer holds the job."""
        with self._lock, self.engine.begin() as conn:
            query = update(jobs_table).where(jobs_table.c.id == job_id)
            if owner is not None:
                query = query.where(jobs_table.c.owner == owner)
            if conn.execute(query.values(phase=event.phase.value)).rowcount == 0:
                raise self._why_not(conn, job_id, owner, None)
            conn.execute(insert(events_table).values(**_event_row(job_id, event)))

    # -- cancelling (by any server) ----------------------------------------
    def request_cancel(self, job_id: str) -> Job:
        """Record a user's cancel. A queued job is cancelled at once; a running one is
        marked for its owner to abort; one past its point of no return is refused."""
        with self._lock, self.engine.begin() as conn:
            query = select(jobs_table).where(jobs_table.c.id == job_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).mappings().first()
            if row is None:
                raise NotFound(f"no job with id {job_id!r}")
            job = job_from_row(row)
            if job.state.finished:
                raise InputError(f"job {job_id} is already {job.state.value}")
            if past_no_return(job.kind, job.phase):
                raise RefusedError(_too_late(job.kind, job.vm, job.dest_host or job.source_host),
                                   [])
            now = time.time()
            if job.state is JobState.QUEUED:
                conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(
                    state=JobState.CANCELLED.value, finished_at=now, cancel_requested=True,
                    error="cancelled before it started"))
                conn.execute(insert(events_table).values(**_event_row(job_id, JobEvent(
                    now, Phase.ROLLBACK, "cancelled while waiting for a slot: nothing was done"))))
            else:
                conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(
                    state=JobState.CANCELLING.value, cancel_requested=True))
        return self.job(job_id)

    # -- resources (intent before action) ----------------------------------
    def add_resource(self, job_id: str, host: str, kind: ResourceKind, name: str,
                     pool: str | None = None, path: str | None = None,
                     state: ResourceState = ResourceState.INTENDED) -> int:
        role = "created" if kind.created_by_ferry else "replaced"
        with self._lock, self.engine.begin() as conn:
            result = conn.execute(insert(job_resources_table).values(
                job_id=job_id, host=host, kind=kind.value, role=role, pool=pool, name=name,
                path=path, state=state.value, updated_at=time.time()))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def set_resource(self, resource_id: int, state: ResourceState,
                     path: str | None = None) -> None:
        values: dict[str, Any] = {"state": state.value, "updated_at": time.time()}
        if path is not None:
            values["path"] = path
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(job_resources_table).where(job_resources_table.c.id == resource_id)
                         .values(**values))

    def resources(self, job_id: str) -> list[JobResource]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(job_resources_table)
                                .where(job_resources_table.c.job_id == job_id)
                                .order_by(job_resources_table.c.id)).mappings()
            return [_resource_from_row(r) for r in rows]


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    """Job fields as the table stores them."""
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("progress", "report"):
            values[key] = json.dumps(reports.dump(value))
        elif key == "phase":
            values[key] = Phase(value).value
        else:
            values[key] = value
    return values


def _job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind.value, "vm": job.vm, "source_host": job.source_host,
        "dest_host": job.dest_host, "state": job.state.value, "phase": job.phase.value,
        "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "error": job.error,
        "progress": json.dumps(reports.dump(job.progress)),
        "report": json.dumps(reports.dump(job.report)),
        "vm_uuid": job.vm_uuid, "owner": job.owner,
        "spec": json.dumps(asdict(job.spec) if job.spec is not None else {}),
        "slot_hosts": json.dumps(list(job.slot_hosts)),
        "cancel_requested": job.cancel_requested, "parent_id": job.parent_id,
        "requested_by": job.requested_by,
    }


def _spec_from_json(value: str | None) -> MoveSpec | None:
    fields = json.loads(value or "{}")
    if not fields:
        return None
    fields["disks"] = tuple(fields.get("disks", ()))
    fields["warnings"] = tuple(fields.get("warnings", ()))
    return MoveSpec(**fields)


def job_from_row(row: RowMapping) -> Job:
    kind = JobKind(row["kind"])
    return Job(
        id=row["id"], kind=kind, vm=row["vm"], source_host=row["source_host"],
        dest_host=row["dest_host"], state=JobState(row["state"]), phase=Phase(row["phase"]),
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], error=row["error"],
        progress=reports.load(kind.progress_type, json.loads(row["progress"] or "{}")),
        report=reports.load(kind.report_type, json.loads(row["report"] or "{}")),
        vm_uuid=row["vm_uuid"], spec=_spec_from_json(row["spec"]),
        slot_hosts=tuple(json.loads(row["slot_hosts"] or "[]")), owner=row["owner"],
        cancel_requested=bool(row["cancel_requested"]), parent_id=row["parent_id"],
        requested_by=row["requested_by"],
    )


def _event_row(job_id: str, event: JobEvent) -> dict[str, Any]:
    return {"job_id": job_id, "at": event.at, "phase": event.phase.value,
            "message": event.message, "data": json.dumps(event.data)}


def _event_from_row(row: RowMapping) -> JobEvent:
    return JobEvent(at=row["at"], phase=Phase(row["phase"]), message=row["message"],
                    data=json.loads(row["data"] or "{}"))


def _resource_from_row(row: RowMapping) -> JobResource:
    return JobResource(id=row["id"], host=row["host"], kind=ResourceKind(row["kind"]),
                       name=row["name"], state=ResourceState(row["state"]), pool=row["pool"],
                       path=row["path"])

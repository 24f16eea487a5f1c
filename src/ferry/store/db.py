"""ferry's persistent state: registered hosts, jobs and their events.

SQLAlchemy Core over SQLite by default; any SQLAlchemy URL (PostgreSQL) by
configuration. The inventory itself is not stored: it is rediscovered from
the hosts, which are the truth.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import create_engine, delete, insert, select, update
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from ferry.errors import InputError, NotFound, VMBusy
from ferry.model import Cluster, EvcMode, Host, Job, JobEvent, JobState
from ferry.store import migrate
from ferry.store.schema import UNFINISHED, clusters_table, events_table, hosts_table, jobs_table

_HOST_FIELDS = ("name", "uri", "migration_address", "migration_enabled", "maintenance",
                "max_migrations", "memory_limit_mib", "migration_interface",
                "migration_network_isolated", "cluster")


class Store:
    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # The engine's job threads and the API's threadpool share one file.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            # A database server can restart (upgrade, failover) under a long-running ferry
            # server: test a pooled connection before use rather than fail the next request
            # or a running job's write with "terminating connection".
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, future=True, **kwargs)
        migrate.upgrade(self.engine)  # the schema this code reads and writes: head
        self._lock = threading.Lock()  # SQLite serialises writers anyway; fail fast elsewhere

    # -- hosts -------------------------------------------------------------
    def add_host(self, host: Host) -> None:
        with self._lock, self.engine.begin() as conn:
            exists = conn.execute(
                select(hosts_table.c.name).where(hosts_table.c.name == host.name)).first()
            if exists:
                raise InputError(f"host {host.name} is already registered")
            try:
                conn.execute(insert(hosts_table).values(
                    **{f: getattr(host, f) for f in _HOST_FIELDS}))
            except IntegrityError:
                # Another Store on this database (another server) registered it meanwhile.
                raise InputError(f"host {host.name} is already registered") from None

    def remove_host(self, name: str) -> None:
        with self._lock, self.engine.begin() as conn:
            result = conn.execute(delete(hosts_table).where(hosts_table.c.name == name))
            if result.rowcount == 0:
                raise NotFound(f"no host named {name}")

    def update_host(self, name: str, **values: Any) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(hosts_table).where(hosts_table.c.name == name).values(**values))

    def hosts(self) -> list[Host]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(hosts_table).order_by(hosts_table.c.name)).mappings()
            return [Host(**{f: row[f] for f in _HOST_FIELDS}) for row in rows]

    def host(self, name: str) -> Host:
        with self.engine.connect() as conn:
            row = conn.execute(select(hosts_table).where(hosts_table.c.name == name)).mappings()
            found = row.first()
        if found is None:
            raise NotFound(f"no host named {name}")
        return Host(**{f: found[f] for f in _HOST_FIELDS})

    # -- clusters ----------------------------------------------------------
    def add_cluster(self, name: str) -> None:
        with self._lock, self.engine.begin() as conn:
            exists = conn.execute(
                select(clusters_table.c.name).where(clusters_table.c.name == name)).first()
            if exists:
                raise InputError(f"cluster {name} already exists")
            try:
                conn.execute(insert(clusters_table).values(name=name, created_at=time.time()))
            except IntegrityError:
                raise InputError(f"cluster {name} already exists") from None

    def remove_cluster(self, name: str) -> None:
        with self._lock, self.engine.begin() as conn:
            members = [r.name for r in conn.execute(
                select(hosts_table.c.name).where(hosts_table.c.cluster == name)
                .order_by(hosts_table.c.name))]
            if members:
                raise InputError(f"cluster {name} still has host(s) {', '.join(members)}: "
                                 "remove them from it first")
            result = conn.execute(delete(clusters_table).where(clusters_table.c.name == name))
            if result.rowcount == 0:
                raise NotFound(f"no cluster named {name}")

    def clusters(self) -> list[Cluster]:
        with self.engine.connect() as conn:
            members: dict[str, list[str]] = {}
            for row in conn.execute(select(hosts_table.c.name, hosts_table.c.cluster)
                                    .order_by(hosts_table.c.name)):
                if row.cluster is not None:
                    members.setdefault(row.cluster, []).append(row.name)
            rows = conn.execute(select(clusters_table).order_by(clusters_table.c.name))
            return [Cluster(r.name, tuple(members.get(r.name, ())), r.created_at,
                            _evc_from_json(r.evc)) for r in rows]

    def set_cluster_evc(self, name: str, mode: EvcMode | None) -> None:
        value = json.dumps(asdict(mode)) if mode is not None else None
        with self._lock, self.engine.begin() as conn:
            result = conn.execute(update(clusters_table).where(clusters_table.c.name == name)
                                  .values(evc=value))
            if result.rowcount == 0:
                raise NotFound(f"no cluster named {name}")

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters():
            if cluster.name == name:
                return cluster
        raise NotFound(f"no cluster named {name}")

    # -- jobs --------------------------------------------------------------
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
            return _job_from_row(row) if row is not None else None

    def unfinished_jobs(self) -> list[Job]:
        """Every job that holds a VM now, by any server sharing this database."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs_table).where(
                jobs_table.c.vm_uuid.is_not(None),
                jobs_table.c.state.in_(UNFINISHED))).mappings()
            return [_job_from_row(r) for r in rows]

    def update_job(self, job: Job) -> None:
        row = _job_row(job)
        del row["id"]
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job.id).values(**row))

    def add_event(self, job_id: str, event: JobEvent) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(insert(events_table).values(**_event_row(job_id, event)))

    def job(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
            if row is None:
                raise NotFound(f"no job with id {job_id}")
            events = conn.execute(
                select(events_table).where(events_table.c.job_id == job_id)
                .order_by(events_table.c.id)).mappings()
            return replace(_job_from_row(row), events=tuple(_event_from_row(e) for e in events))

    def jobs(self, limit: int = 100) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs_table).order_by(jobs_table.c.created_at.desc()).limit(limit)).mappings()
            return [_job_from_row(r) for r in rows]

    def mark_interrupted(self) -> None:
        """Jobs a previous server left running did not finish under its watch."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(jobs_table)
                         .where(jobs_table.c.state.in_(UNFINISHED))
                         .values(state=JobState.FAILED.value, finished_at=time.time(),
                                 error="the ferry server stopped while this job ran; "
                                       "check where the VM runs with 'ferry vm show'"))

    def close(self) -> None:
        self.engine.dispose()


def _evc_from_json(value: str | None) -> EvcMode | None:
    if value is None:
        return None
    fields = json.loads(value)
    fields["features"] = tuple(fields["features"])
    return EvcMode(**fields)


def _job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "vm": job.vm, "source_host": job.source_host,
        "dest_host": job.dest_host, "state": job.state.value, "phase": job.phase,
        "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "error": job.error,
        "progress": json.dumps(job.progress), "report": json.dumps(job.report),
        "vm_uuid": job.vm_uuid,
    }


def _job_from_row(row: RowMapping) -> Job:
    return Job(
        id=row["id"], kind=row["kind"], vm=row["vm"], source_host=row["source_host"],
        dest_host=row["dest_host"], state=JobState(row["state"]), phase=row["phase"],
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], error=row["error"],
        progress=json.loads(row["progress"] or "{}"), report=json.loads(row["report"] or "{}"),
        vm_uuid=row["vm_uuid"],
    )


def _event_row(job_id: str, event: JobEvent) -> dict[str, Any]:
    return {"job_id": job_id, "at": event.at, "phase": event.phase, "message": event.message,
            "data": json.dumps(event.data)}


def _event_from_row(row: RowMapping) -> JobEvent:
    return JobEvent(at=row["at"], phase=row["phase"], message=row["message"],
                    data=json.loads(row["data"] or "{}"))

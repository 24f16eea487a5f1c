"""Several ferry servers on one database: who runs which job, and which may start.

The database is the coordination engine; ferry writes no consensus of its own.
- A server is a row in ``servers``; it owns a job through ``jobs.owner`` and a
  lease (``jobs.lease_until``, on the database's clock) that it renews. A job
  whose lease ran out is taken over with a compare-and-set update: exactly one
  server wins it.
- The per-host migration slots and the FIFO queue are decided in one
  transaction that holds a database-wide lock (a PostgreSQL advisory lock; on
  SQLite, which serves one server, the database's own write lock): it counts
  the slots held by running jobs, picks the startable queued jobs with the
  pure :func:`ferry.slots.startable`, and marks them running with
  their owner, so two servers can never both fill a host's last slot.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from sqlalchemy import insert, or_, select, text, update
from sqlalchemy.engine import Connection, Engine

from ferry.job import Job, JobState, ServerInfo
from ferry.slots import QueuedMove, startable
from ferry.store.jobs import job_from_row
from ferry.store.schema import UNFINISHED, hosts_table, jobs_table, servers_table

# The advisory lock every server takes to decide which queued moves start.
CLAIM_LOCK_KEY = 0x66657279  # "fery"
HOLDING = (JobState.RUNNING.value, JobState.CANCELLING.value)  # states that hold slots


def db_now(conn: Connection) -> float:
    """Seconds on the database's clock, so leases do not depend on the servers' clocks."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())"))
                     .scalar_one())
    return time.time()  # SQLite: one server, on the database's machine


class Coordination:
    engine: Engine
    _lock: threading.Lock

    # -- servers -------------------------------------------------------------
    def register_server(self, name: str) -> str:
        server_id = str(uuid.uuid4())
        with self._lock, self.engine.begin() as conn:
            now = db_now(conn)
            conn.execute(insert(servers_table).values(id=server_id, name=name, started_at=now,
                                                      seen_at=now))
        return server_id

    def renew(self, server_id: str, lease_s: float) -> None:
        """The server is alive: its row and every unfinished job it owns."""
        self._lease_all(server_id, "seen_at", lease_s)

    def stop_server(self, server_id: str) -> None:
        """A clean stop: its leases end now, so another server takes its jobs at once."""
        self._lease_all(server_id, "stopped_at", 0.0)

    def _lease_all(self, server_id: str, moment: str, lease_s: float) -> None:
        """Stamp the server's row (``moment``: seen_at or stopped_at) and lease every
        unfinished job it owns until ``lease_s`` from now."""
        with self._lock, self.engine.begin() as conn:
            now = db_now(conn)
            conn.execute(update(servers_table).where(servers_table.c.id == server_id)
                         .values({moment: now}))
            conn.execute(update(jobs_table).where(
                jobs_table.c.owner == server_id, jobs_table.c.state.in_(UNFINISHED))
                .values(lease_until=now + lease_s))

    def servers(self, lease_s: float) -> list[ServerInfo]:
        """Every server that has not stopped, with the unfinished jobs it runs."""
        with self.engine.connect() as conn:
            now = db_now(conn)
            owned: dict[str, int] = {}
            for row in conn.execute(select(jobs_table.c.owner).where(
                    jobs_table.c.state.in_(UNFINISHED), jobs_table.c.owner.is_not(None))):
                owned[row.owner] = owned.get(row.owner, 0) + 1
            rows = conn.execute(select(servers_table).where(servers_table.c.stopped_at.is_(None))
                                .order_by(servers_table.c.started_at))
            return [ServerInfo(r.id, r.name, r.started_at, r.seen_at,
                               r.seen_at + lease_s >= now, owned.get(r.id, 0)) for r in rows]

    # -- jobs ----------------------------------------------------------------
    def own(self, job_id: str, server_id: str, lease_s: float) -> None:
        """Record that ``server_id`` runs a job it just created (an evacuation)."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(
                owner=server_id, lease_until=db_now(conn) + lease_s))

    def claim_startable(self, server_id: str, lease_s: float) -> list[Job]:
        """Start the queued moves whose hosts have free slots, in FIFO order, as ours."""
        with self._lock, self.engine.begin() as conn:
            _lock_claims(conn, server_id)
            queued = [job_from_row(r) for r in conn.execute(
                select(jobs_table).where(jobs_table.c.state == JobState.QUEUED.value,
                                         jobs_table.c.slot_hosts != "[]")
                .order_by(jobs_table.c.created_at, jobs_table.c.id)).mappings()]
            if not queued:
                return []
            running = _slot_counts(conn, HOLDING)
            limits = _limits(conn, {h for j in queued for h in j.slot_hosts})
            chosen = set(startable([QueuedMove(j.id, j.slot_hosts) for j in queued], running,
                                   limits))
            now = db_now(conn)
            claimed = []
            for job in queued:
                if job.id not in chosen:
                    continue
                result = conn.execute(update(jobs_table).where(
                    jobs_table.c.id == job.id, jobs_table.c.state == JobState.QUEUED.value)
                    .values(state=JobState.RUNNING.value, owner=server_id,
                            lease_until=now + lease_s, started_at=time.time()))
                if result.rowcount == 1:
                    claimed.append(job)
            return claimed

    def take_over_expired(self, server_id: str, lease_s: float) -> list[Job]:
        """Running jobs whose owner's lease ran out, now ours (each won by one server)."""
        with self._lock, self.engine.begin() as conn:
            now = db_now(conn)
            expired = or_(jobs_table.c.lease_until.is_(None), jobs_table.c.lease_until < now)
            candidates = [job_from_row(r) for r in conn.execute(
                select(jobs_table).where(jobs_table.c.state.in_(HOLDING), expired)
                .order_by(jobs_table.c.created_at)).mappings()]
            won = []
            for job in candidates:
                result = conn.execute(update(jobs_table).where(
                    jobs_table.c.id == job.id, jobs_table.c.state.in_(HOLDING), expired)
                    .values(owner=server_id, lease_until=now + lease_s))
                if result.rowcount == 1:
                    won.append(job)
            return won

    def cancels_for(self, server_id: str) -> list[str]:
        """The jobs this server runs that a user asked, through any server, to cancel."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs_table.c.id).where(
                jobs_table.c.owner == server_id, jobs_table.c.cancel_requested.is_(True),
                jobs_table.c.state == JobState.CANCELLING.value))
            return [r.id for r in rows]

    def slot_limits(self, hosts: set[str]) -> dict[str, int]:
        with self.engine.connect() as conn:
            return _limits(conn, hosts)

    def slot_usage(self) -> tuple[dict[str, int], dict[str, int]]:
        """host -> moves holding a slot there, and host -> moves waiting in line for it."""
        with self.engine.connect() as conn:
            return _slot_counts(conn, HOLDING), _slot_counts(conn, (JobState.QUEUED.value,))


def _lock_claims(conn: Connection, server_id: str) -> None:
    """Serialise the servers' claims for the rest of this transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
    else:
        # SQLite: a first write takes the database's write lock, so what this
        # transaction then reads is what every other claim committed.
        conn.execute(update(servers_table).where(servers_table.c.id == server_id)
                     .values(seen_at=servers_table.c.seen_at))


def _limits(conn: Connection, hosts: set[str]) -> dict[str, int]:
    """The migration limit of each of ``hosts`` (only those: a fleet has thousands)."""
    return {r.name: r.max_migrations for r in conn.execute(
        select(hosts_table.c.name, hosts_table.c.max_migrations)
        .where(hosts_table.c.name.in_(sorted(hosts))))}


def _slot_counts(conn: Connection, states: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in conn.execute(select(jobs_table.c.slot_hosts).where(
            jobs_table.c.state.in_(states))):
        for host in json.loads(row.slot_hosts or "[]"):
            counts[host] = counts.get(host, 0) + 1
    return counts

"""ferry's persistent state: registered hosts, clusters, jobs and their events.

SQLAlchemy Core over SQLite by default; any SQLAlchemy URL (PostgreSQL) by
configuration. The inventory itself is not stored: it is rediscovered from
the hosts, which are the truth.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import create_engine, delete, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ferry.errors import InputError, NotFound
from ferry.model import HOST_SETTINGS, Cluster, EvcMode, Host
from ferry.store import migrate
from ferry.store.coordination import Coordination
from ferry.store.jobs import JobRecords
from ferry.store.schema import clusters_table, hosts_table, vm_settings_table
from ferry.store.tallies import Tallies

_HOST_FIELDS = ("name", "uri", *HOST_SETTINGS, "cluster")


class Store(JobRecords, Coordination, Tallies):
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
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_wal)
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
                            _evc_from_json(r.evc), r.migration_policy) for r in rows]

    def set_cluster_evc(self, name: str, mode: EvcMode | None) -> None:
        self._update_cluster(name, evc=json.dumps(asdict(mode)) if mode is not None else None)

    def set_cluster_policy(self, name: str, policy: str | None) -> None:
        self._update_cluster(name, migration_policy=policy)

    def _update_cluster(self, name: str, **values: Any) -> None:
        with self._lock, self.engine.begin() as conn:
            result = conn.execute(update(clusters_table).where(clusters_table.c.name == name)
                                  .values(**values))
            if result.rowcount == 0:
                raise NotFound(f"no cluster named {name}")

    def set_vm_policy(self, vm_uuid: str, policy: str | None) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(delete(vm_settings_table).where(vm_settings_table.c.vm_uuid == vm_uuid))
            if policy is not None:
                conn.execute(insert(vm_settings_table).values(vm_uuid=vm_uuid,
                                                              migration_policy=policy))

    def vm_policy(self, vm_uuid: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(vm_settings_table.c.migration_policy)
                               .where(vm_settings_table.c.vm_uuid == vm_uuid)).first()
        return None if row is None else str(row.migration_policy)

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters():
            if cluster.name == name:
                return cluster
        raise NotFound(f"no cluster named {name}")

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # Readers (the API) then never wait for a job's write, nor it for them; and a
    # commit no longer forces the disk twice, which a fleet's evacuation felt.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _evc_from_json(value: str | None) -> EvcMode | None:
    if value is None:
        return None
    fields = json.loads(value)
    fields["features"] = tuple(fields["features"])
    return EvcMode(**fields)



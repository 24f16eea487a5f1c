"""Schema upgrades: a database written before ferry versioned its schema keeps everything.

The fixtures in tests/fixtures hold what a ferry of commit 2201e3d wrote (the last
one that patched its tables by hand): two tuned hosts in a cluster with an EVC
mode, finished jobs with events and reports, and a running move that holds its
VM. ``ferry-2201e3d.db`` is its SQLite file; ``ferry-2201e3d.sql`` is a plain
pg_dump of the same content on PostgreSQL, restored here with psql.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pgserver import PostgresServer
from sqlalchemy import MetaData, create_engine, inspect, select, text

from ferry.cli import main as cli
from ferry.errors import ConfigError, VMBusy
from ferry.job import Job, JobKind, JobState, Phase
from ferry.model import Host
from ferry.reports import EvacuationReport, LiveProgress, LiveReport, StorageReport
from ferry.store import migrate
from ferry.store.db import Store
from ferry.store.schema import metadata

FIXTURES = Path(__file__).parent.parent / "fixtures"
BASELINE_TABLES = ("hosts", "clusters", "jobs", "job_events")
RUNNING_JOB = "44444444-4444-4444-4444-444444444444"
RUNNING_VM = "aaaaaaaa-0000-0000-0000-000000000003"

Rows = dict[str, list[dict[str, Any]]]  # table -> its rows, as column -> value
DIALECTS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DIALECTS)
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database as the ferry of the fixtures left it, SQLite or PostgreSQL."""
    if request.param == "sqlite":
        copy = tmp_path / "ferry.db"
        shutil.copyfile(FIXTURES / "ferry-2201e3d.db", copy)
        return f"sqlite:///{copy}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.empty()
    server.load(FIXTURES / "ferry-2201e3d.sql")
    return url


@pytest.fixture(params=DIALECTS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ferry.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.empty()


def rows(url: str) -> Rows:
    """Every row of the baseline's tables, on the baseline's columns, in key order."""
    engine = create_engine(url)
    try:
        reflected = MetaData()
        reflected.reflect(engine, only=BASELINE_TABLES)
        with engine.connect() as conn:
            return {name: [dict(r) for r in conn.execute(
                select(table).order_by(*table.primary_key.columns)).mappings()]
                for name, table in reflected.tables.items()}
    finally:
        engine.dispose()


def old_rows(url: str, before: Rows) -> Rows:
    """The rows of ``url`` on the columns ``before`` had (leaving out what an upgrade added)."""
    columns = {table: list(found[0]) for table, found in before.items()}  # no table is empty
    return {table: [{column: row[column] for column in columns[table]} for row in found]
            for table, found in rows(url).items()}


def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), metadata))
    finally:
        engine.dispose()


def ferry(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str,
          *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("FERRY_DATABASE_URL", url)
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_content_kept(store: Store) -> None:
    """What a user of the fixtures' ferry would look for, read through the store."""
    kvm1, kvm2 = store.hosts()
    assert kvm1 == Host(name="kvm1", uri="qemu+tls://10.0.0.1/system",
                        migration_address="198.18.0.11", max_migrations=4,
                        memory_limit_mib=65536, migration_interface="eth1",
                        migration_network_isolated=True, cluster="prod")
    assert kvm2 == Host(name="kvm2", uri="qemu+tls://10.0.0.2/system",
                        migration_address="198.18.0.12", migration_enabled=False,
                        maintenance=True, max_migrations=1, memory_limit_mib=32768,
                        cluster="prod")
    prod, empty = store.cluster("prod"), store.cluster("empty")
    assert prod.hosts == ("kvm1", "kvm2") and empty.hosts == ()
    assert prod.evc is not None and prod.evc.model == "Westmere"
    assert prod.evc.features == ("sse4.1", "sse4.2", "aes") and empty.evc is None
    jobs = {job.id: store.job(job.id) for job in store.jobs()}
    assert len(jobs) == 4
    assert sum(len(job.events) for job in jobs.values()) == 8
    assert {job.state for job in jobs.values()} == {
        JobState.SUCCEEDED, JobState.FAILED, JobState.RUNNING}
    done = jobs["11111111-1111-1111-1111-111111111111"]
    assert done.report == LiveReport(total_ms=9000, downtime_ms=31, iterations=3)
    assert done.events[1].data == {"iteration": 1}
    # Every kind's report and progress read typed, the keys the old ferry wrote kept.
    assert jobs["22222222-2222-2222-2222-222222222222"].report == StorageReport(total_ms=9000)
    assert jobs["33333333-3333-3333-3333-333333333333"].report == EvacuationReport(
        host="kvm2", moved={"web1": "kvm1"})
    assert jobs[RUNNING_JOB].progress == LiveProgress(memory_total=2048, memory_processed=512)
    assert jobs[RUNNING_JOB].report is None
    running = store.unfinished_job(RUNNING_VM)
    assert running is not None and running.id == RUNNING_JOB  # it still holds its VM
    intruder = Job(id="55555555-5555-5555-5555-555555555555", kind=JobKind.MIGRATE, vm="app1",
                   source_host="kvm1", dest_host="kvm2", state=JobState.QUEUED,
                   phase=Phase.REQUESTED, created_at=running.created_at + 1, vm_uuid=RUNNING_VM)
    with pytest.raises(VMBusy, match=RUNNING_JOB):
        store.add_job(intruder)


# -- a database of the previous ferry ------------------------------------------
def test_an_old_database_upgrades_on_start_and_keeps_everything(old_url: str) -> None:
    before = rows(old_url)
    assert revision(old_url) is None

    store = Store(old_url)
    try:
        assert revision(old_url) == migrate.head()
        assert old_rows(old_url, before) == before  # every row, every value of the old columns
        assert_content_kept(store)
    finally:
        store.close()
    assert schema_differences(old_url) == []


def test_the_new_job_columns_of_old_jobs_hold_their_defaults(old_url: str) -> None:
    Store(old_url).close()
    engine = create_engine(old_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text(
                "SELECT owner, lease_until, spec, slot_hosts, cancel_requested, parent_id "
                "FROM jobs WHERE id = :id"), {"id": RUNNING_JOB}).one()
    finally:
        engine.dispose()
    assert tuple(found) == (None, None, "{}", "[]", False, None)


def test_ferry_db_upgrade_upgrades_an_old_database_and_then_has_nothing_to_do(
        old_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = rows(old_url)
    code, out, _ = ferry(monkeypatch, capsys, old_url, "db", "status")
    assert code == 0 and "unversioned" in out and "upgrade pending" in out

    code, out, err = ferry(monkeypatch, capsys, old_url, "db", "upgrade")
    assert (code, err) == (0, "")
    assert f"upgraded from unversioned (the schema of baseline {migrate.BASELINE}" in out
    assert f"to {migrate.head()} (head)" in out
    assert revision(old_url) == migrate.head()
    assert old_rows(old_url, before) == before

    code, out, _ = ferry(monkeypatch, capsys, old_url, "db", "upgrade")
    assert code == 0 and "nothing to upgrade" in out
    assert old_rows(old_url, before) == before and revision(old_url) == migrate.head()
    code, out, _ = ferry(monkeypatch, capsys, old_url, "db", "status")
    assert code == 0 and "up to date" in out

    store = Store(old_url)
    try:
        assert_content_kept(store)
    finally:
        store.close()


def test_starting_again_on_an_upgraded_database_changes_nothing(old_url: str) -> None:
    Store(old_url).close()
    before = rows(old_url)
    store = Store(old_url)
    try:
        assert old_rows(old_url, before) == before and revision(old_url) == migrate.head()
        assert not migrate.status(store.engine).pending
    finally:
        store.close()


# -- empty, newer and foreign databases ---------------------------------------
def test_an_empty_database_gets_the_whole_schema(empty_url: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = ferry(monkeypatch, capsys, empty_url, "db", "status")
    assert code == 0 and "empty" in out and "upgrade pending" in out
    code, out, _ = ferry(monkeypatch, capsys, empty_url, "db", "upgrade")
    assert code == 0 and f"from empty (no ferry tables) to {migrate.head()}" in out
    assert revision(empty_url) == migrate.head()
    assert schema_differences(empty_url) == []
    Store(empty_url).close()  # and a server starts on it
    assert revision(empty_url) == migrate.head()


def test_a_database_of_a_newer_ferry_is_refused_by_name(empty_url: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    Store(empty_url).close()
    engine = create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(ConfigError, match="revision 9999, which this ferry does not know"):
        Store(empty_url)
    code, _, err = ferry(monkeypatch, capsys, empty_url, "db", "upgrade")
    assert code == ConfigError.exit_code and "9999" in err
    code, out, _ = ferry(monkeypatch, capsys, empty_url, "db", "status")
    assert code == ConfigError.exit_code and "9999 (unknown to this ferry)" in out
    assert revision(empty_url) == "9999"


def test_tables_without_a_revision_that_are_not_the_baseline_are_refused(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # the jobs table of a ferry older than the baseline
        conn.execute(text("CREATE TABLE jobs (id VARCHAR(36) PRIMARY KEY, kind VARCHAR(32))"))
    engine.dispose()
    with pytest.raises(ConfigError, match="not the baseline schema") as refused:
        Store(url)
    assert "jobs.vm_uuid" in refused.value.message
    assert "jobs.jobs_one_move_per_vm" in refused.value.message
    assert "hosts, " in refused.value.message and "hosts.name" not in refused.value.message
    assert revision(url) is None
    assert inspect(create_engine(url)).get_table_names() == ["jobs"]


@pytest.mark.postgres
def test_servers_starting_together_on_a_fresh_postgresql_both_start(
        postgres_server: PostgresServer) -> None:
    url = postgres_server.empty()
    servers = 3
    together = threading.Barrier(servers)
    opened: list[Store] = []
    failures: list[BaseException] = []

    def start() -> None:
        together.wait()
        try:
            opened.append(Store(url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert failures == [] and len(opened) == servers
        assert revision(url) == migrate.head()
        assert schema_differences(url) == []
    finally:
        for store in opened:
            store.close()

"""Bringing a database to the schema of this ferry, with Alembic.

The revisions live in ``ferry/store/migrations/versions``; ``schema.py`` is the
schema they end at. A database goes through four cases:

- empty: every revision runs, from nothing to head;
- written before ferry versioned its schema (tables, no ``alembic_version``):
  it holds the baseline's schema, so it is stamped with the baseline and
  upgraded from there;
- at a revision this ferry knows: the revisions after it run (none at head);
- at a revision this ferry does not know (a newer ferry upgraded it): refused.

Servers sharing one PostgreSQL may start together: a PostgreSQL advisory lock
lets one of them migrate while the others wait, then find the schema at head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from ferry.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema of every database written before revisions existed
# The one key of the advisory lock that serialises migrations (b"ferry" as an integer).
ADVISORY_LOCK_KEY = int.from_bytes(b"ferry", "big")


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None  # the database's revision; None: empty or unversioned
    head: str  # the revision this ferry's schema is at
    unversioned: bool  # tables written before revisions existed (the baseline, unstamped)
    known: bool  # this ferry knows the current revision (False: a newer ferry wrote it)

    @property
    def pending(self) -> bool:
        return self.current != self.head

    def describe_current(self) -> str:
        if self.unversioned:
            return f"unversioned (the schema of baseline {BASELINE}, not yet stamped)"
        if self.current is None:
            return "empty (no ferry tables)"
        return self.current if self.known else f"{self.current} (unknown to this ferry)"


def _config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def head() -> str:
    found = _script().get_current_head()
    assert found is not None, "ferry ships at least the baseline revision"
    return found


def _status(connection: Connection) -> SchemaStatus:
    current = MigrationContext.configure(connection).get_current_revision()
    script = _script()
    known = current is None or current in {s.revision for s in script.walk_revisions()}
    unversioned = current is None and inspect(connection).has_table("jobs")
    return SchemaStatus(current, head(), unversioned, known)


def status(engine: Engine) -> SchemaStatus:
    with engine.connect() as connection:
        return _status(connection)


def _refuse_unknown(engine: Engine, found: SchemaStatus) -> None:
    if not found.known:
        url = engine.url.render_as_string(hide_password=True)
        raise ConfigError(
            f"the database {url} is at schema revision {found.current}, which this ferry "
            f"does not know (its newest is {found.head}): a newer ferry upgraded it; run that "
            "ferry, or restore the backup taken before the upgrade")


def _missing_from_baseline(connection: Connection) -> list[str]:
    """What an unversioned database lacks of the baseline's tables, columns and indexes."""
    scratch = create_engine("sqlite://")
    try:
        with scratch.connect() as conn:
            command.upgrade(_config(conn), BASELINE)
            want = _shape(conn)
    finally:
        scratch.dispose()
    have = _shape(connection)
    return sorted([table for table in want if table not in have]
                  + [f"{table}.{part}" for table, parts in want.items() if table in have
                     for part in parts - have[table]])


def _shape(connection: Connection) -> dict[str, set[str]]:
    """Each table's column and index names."""
    found = inspect(connection)
    return {table: {c["name"] for c in found.get_columns(table)}
            | {str(i["name"]) for i in found.get_indexes(table)}
            for table in found.get_table_names() if table != "alembic_version"}


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """One migrating server at a time on PostgreSQL (SQLite has one server)."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
        connection.commit()


@dataclass(frozen=True)
class Upgrade:
    before: SchemaStatus
    after: str  # the revision the database is at now: head


def upgrade(engine: Engine) -> Upgrade:
    """Bring the database to head; a no-op when it is there already."""
    with engine.connect() as connection, _migration_lock(connection):
        before = _status(connection)
        _refuse_unknown(engine, before)
        cfg = _config(connection)
        if before.unversioned:
            missing = _missing_from_baseline(connection)
            if missing:
                url = engine.url.render_as_string(hide_password=True)
                raise ConfigError(
                    f"the database {url} has ferry tables without a schema revision, but not "
                    f"the baseline schema ({BASELINE}): it lacks {', '.join(missing)}; "
                    "ferry cannot tell how to upgrade it")
            command.stamp(cfg, BASELINE)
        if before.pending:
            command.upgrade(cfg, "head")
        connection.commit()
        return Upgrade(before, head())

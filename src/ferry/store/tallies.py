"""What the job records add up to, counted by the database for monitoring.

Every figure is an aggregate query: the database returns a row per kind, state
(and range), never the jobs themselves. A report's numbers live in its JSON
(``jobs.report``); SQLite reads them with ``json_extract``, PostgreSQL with
``->>`` on the text cast to JSON. Reading every report costs time (seconds
for 100,000 jobs), so a reader can split the history at a moment: the moves
that ended by it (``until``), which never change again and can be counted
once, and the rest (``after``: moves still queued or running, or ended since).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Float, case, cast, func, or_, select, type_coerce
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from ferry.figures import FINISHED, MOVE_KINDS, KindCount, RangeCount
from ferry.store.coordination import db_now
from ferry.store.schema import jobs_table


class Tallies:
    engine: Engine

    def database_now(self) -> float:
        """Seconds on the database's clock (the one every server's records share)."""
        with self.engine.connect() as conn:
            return db_now(conn)

    def move_counts(self, until: float | None = None,
                    after: float | None = None) -> list[KindCount]:
        """The moves of each kind in each state, with the bytes their reports say were sent:
        every move, or those that ended by ``until``, or the others (``after``)."""
        with self.engine.connect() as conn:
            sent = _report_number(conn, "data_bytes")
            rows = conn.execute(
                select(jobs_table.c.kind, jobs_table.c.state, func.count(),
                       func.coalesce(func.sum(sent), 0))
                .where(jobs_table.c.kind.in_(MOVE_KINDS), *_window(until, after))
                .group_by(jobs_table.c.kind, jobs_table.c.state))
            return [KindCount(kind, state, int(moves), int(data)) for kind, state, moves, data
                    in rows]

    def report_ranges(self, field_ms: str, bounds_s: Sequence[float],
                      until: float | None = None,
                      after: float | None = None) -> list[RangeCount]:
        """Ended moves whose report has ``field_ms`` (milliseconds), counted per kind,
        result and range of ``bounds_s``; the totals are in seconds. ``until``, ``after``:
        as :meth:`move_counts`."""
        with self.engine.connect() as conn:
            value = (_report_number(conn, field_ms) / 1000.0).label("value")
            above = case(*((value <= bound, i) for i, bound in enumerate(bounds_s)),
                         else_=len(bounds_s))
            # A subquery: the range is written once, and grouped by its column's name.
            inner = (select(jobs_table.c.kind, jobs_table.c.state, value,
                            above.label("above"))
                     .where(jobs_table.c.kind.in_(MOVE_KINDS),
                            jobs_table.c.state.in_(FINISHED), *_window(until, after),
                            value.is_not(None))
                     .subquery())
            rows = conn.execute(
                select(inner.c.kind, inner.c.state, inner.c.above, func.count(),
                       func.sum(inner.c.value))
                .group_by(inner.c.kind, inner.c.state, inner.c.above))
            return [RangeCount(kind, state, int(above), int(moves), float(total))
                    for kind, state, above, moves, total in rows]


def _window(until: float | None, after: float | None) -> list[ColumnElement[bool]]:
    """The jobs ended by ``until``; or all but those ended by ``after``; or (None) all."""
    ended = jobs_table.c.state.in_(FINISHED)
    conditions: list[ColumnElement[bool]] = []
    if until is not None:
        conditions.append(ended & (jobs_table.c.finished_at <= until))
    if after is not None:
        conditions.append(or_(~ended, jobs_table.c.finished_at.is_(None),
                              jobs_table.c.finished_at > after))
    return conditions


def _report_number(conn: Connection, key: str) -> ColumnElement[float]:
    """A number of the job's report; NULL where the report lacks it (or holds null)."""
    document: ColumnElement[Any]
    if conn.dialect.name == "postgresql":
        document = cast(jobs_table.c.report, JSON)
    else:
        # SQLite's JSON functions read the text as it is; a CAST would make it a number.
        document = type_coerce(jobs_table.c.report, JSON)
    number: ColumnElement[float] = document[key].as_float().cast(Float)
    return number

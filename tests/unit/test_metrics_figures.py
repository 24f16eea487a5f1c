"""The figures of /metrics from job records: the database's counts (SQLite and PostgreSQL)
and the plain functions that make Prometheus' cumulative buckets and gauges of them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from ferry import figures
from ferry.engine.tallying import RecordTallies
from ferry.figures import DOWNTIME_BOUNDS_S, DURATION_BOUNDS_S, KindCount, RangeCount, Tally
from ferry.job import Job, JobKind, JobState, Phase
from ferry.model import Host
from ferry.reports import ColdReport, EvacuationReport, LiveReport, Report, StorageReport
from ferry.store.db import Store

INF = float("inf")


def _job(kind: JobKind, state: JobState, report: Report | None,
         finished_at: float | None = None) -> Job:
    return Job(id=str(uuid.uuid4()), kind=kind, vm="vm", source_host="host1",
               dest_host="host2", state=state, phase=Phase.DONE, created_at=time.time(),
               finished_at=finished_at if state.finished else None, report=report,
               vm_uuid=None if kind is JobKind.EVACUATE else str(uuid.uuid4()))


# (kind, state, report): values on a bound, between bounds, past the last, and missing.
RECORDS = [
    (JobKind.MIGRATE, JobState.SUCCEEDED, LiveReport(total_ms=1000, downtime_ms=10,
                                                     data_bytes=3 << 20)),
    (JobKind.MIGRATE, JobState.SUCCEEDED, LiveReport(total_ms=1700, downtime_ms=42,
                                                     data_bytes=5 << 20)),
    (JobKind.MIGRATE, JobState.SUCCEEDED, LiveReport(total_ms=42, downtime_ms=None,
                                                     data_bytes=None)),
    (JobKind.MIGRATE, JobState.FAILED, LiveReport(total_ms=900_000, data_bytes=1 << 20)),
    (JobKind.MIGRATE, JobState.FAILED, None),  # refused when its slot came: no report
    (JobKind.MIGRATE_WITH_STORAGE, JobState.SUCCEEDED,
     LiveReport(total_ms=61_000, downtime_ms=12_000, data_bytes=7 << 30)),
    (JobKind.STORAGE_MIGRATE, JobState.CANCELLED, StorageReport(total_ms=250)),
    (JobKind.COLD_MIGRATE, JobState.SUCCEEDED, ColdReport(total_ms=30_000)),
    (JobKind.MIGRATE, JobState.RUNNING, LiveReport(total_ms=5)),  # not ended: no duration
    (JobKind.MIGRATE, JobState.QUEUED, None),
    (JobKind.MIGRATE, JobState.QUEUED, None),
    (JobKind.COLD_MIGRATE, JobState.QUEUED, None),
    (JobKind.EVACUATE, JobState.SUCCEEDED, EvacuationReport(total_ms=70_000)),  # not a move
]


def _expected(field: str, bounds: tuple[float, ...], by_result: bool
              ) -> dict[tuple[str, ...], list[tuple[float, int]]]:
    """By the definition: for each bound, the ended moves whose value is at most it."""
    values: dict[tuple[str, ...], list[float]] = {}
    for kind, state, report in RECORDS:
        ms = getattr(report, field, None)
        if kind is JobKind.EVACUATE or not state.finished or ms is None:
            continue
        labels = (kind.value, state.value) if by_result else (kind.value,)
        values.setdefault(labels, []).append(ms / 1000)
    return {labels: [(b, sum(1 for v in found if v <= b)) for b in (*bounds, INF)]
            for labels, found in values.items()}


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    store = open_store()
    # Ended a minute apart, the first an hour and a quarter ago.
    start = time.time() - 4500
    for i, (kind, state, report) in enumerate(RECORDS):
        store.add_job(_job(kind, state, report, start + 60 * i))
    return store


@pytest.mark.parametrize(("field", "bounds", "by_result"), [
    ("total_ms", DURATION_BOUNDS_S, True), ("downtime_ms", DOWNTIME_BOUNDS_S, False)])
def test_histograms_from_the_database_count_each_ended_move_once_by_its_report(
        store: Store, field: str, bounds: tuple[float, ...], by_result: bool) -> None:
    found = figures.histograms(store.report_ranges(field, bounds), bounds, by_result)

    expected = _expected(field, bounds, by_result)
    assert {h.labels: list(h.buckets) for h in found} == expected
    for h in found:
        assert h.count == h.buckets[-1][1]
    sums = {h.labels: h.total for h in found}
    for labels in expected:
        assert sums[labels] == pytest.approx(sum(
            getattr(r, field) / 1000 for k, s, r in RECORDS
            if (k.value, s.value)[:len(labels)] == labels and getattr(r, field, None)))


def test_moves_queued_and_sent_bytes_from_the_database(store: Store) -> None:
    counts = store.move_counts()

    ended = figures.finished_moves(counts)
    for kind in figures.MOVE_KINDS:
        for result in figures.FINISHED:
            assert ended[kind, result] == sum(
                1 for k, s, _r in RECORDS if (k.value, s.value) == (kind, result)), (kind, result)
    assert "evacuate" not in {kind for kind, _result in ended}
    assert figures.queued_moves(counts) == {
        kind: sum(1 for k, s, _r in RECORDS if k.value == kind and s is JobState.QUEUED)
        for kind in figures.MOVE_KINDS}
    assert figures.sent_bytes(counts) == {
        kind: sum(getattr(r, "data_bytes", None) or 0 for k, _s, r in RECORDS if k.value == kind)
        for kind in figures.MOVE_KINDS}


def test_an_empty_database_shows_every_kind_and_result_at_zero(
        open_store: Callable[[], Store]) -> None:
    store = open_store()
    counts = store.move_counts()
    assert set(figures.finished_moves(counts).values()) == {0}
    assert len(figures.finished_moves(counts)) == len(figures.MOVE_KINDS) * 3
    assert store.report_ranges("total_ms", DURATION_BOUNDS_S) == []


def test_buckets_are_cumulative_and_a_value_past_the_last_bound_is_only_in_inf() -> None:
    bounds = (1.0, 5.0)
    ranges = [RangeCount("migrate", "succeeded", 0, 2, 1.5),
              RangeCount("migrate", "succeeded", 2, 1, 9.0),
              RangeCount("migrate", "failed", 1, 4, 12.0)]

    by_result = figures.histograms(ranges, bounds)
    by_kind = figures.histograms(ranges, bounds, by_result=False)

    assert [(h.labels, h.buckets, h.count, h.total) for h in by_result] == [
        (("migrate", "failed"), ((1.0, 0), (5.0, 4), (INF, 4)), 4, 12.0),
        (("migrate", "succeeded"), ((1.0, 2), (5.0, 2), (INF, 3)), 3, 10.5)]
    assert [(h.labels, h.buckets, h.count, h.total) for h in by_kind] == [
        (("migrate",), ((1.0, 2), (5.0, 6), (INF, 7)), 7, 22.5)]


def test_gauges_name_every_registered_host() -> None:
    hosts = [Host("host1", "qemu:///a", connected=True, max_migrations=2),
             Host("host2", "qemu:///b", connected=False, max_migrations=4),
             Host("host3", "qemu:///c", connected=True)]
    used = {"host1": 2, "gone": 1}  # a host removed while a move held it is not shown

    assert figures.slot_use(hosts, used) == {"host1": (2, 2), "host2": (0, 4),
                                             "host3": (0, hosts[2].max_migrations)}
    assert figures.hosts_by_state(hosts) == {"connected": 2, "disconnected": 1}
    assert figures.hosts_by_state([]) == {"connected": 0, "disconnected": 0}
    assert figures.queued_moves([KindCount("migrate", "running", 3)])["migrate"] == 0


def _whole(store: Store) -> Tally:
    return Tally(tuple(store.move_counts()),
                 tuple(store.report_ranges("total_ms", DURATION_BOUNDS_S)),
                 tuple(store.report_ranges("downtime_ms", DOWNTIME_BOUNDS_S)))


def _shown(tally: Tally) -> tuple[object, ...]:
    """What /metrics makes of a tally."""
    return (figures.finished_moves(tally.counts), figures.queued_moves(tally.counts),
            figures.sent_bytes(tally.counts),
            figures.histograms(tally.durations, DURATION_BOUNDS_S),
            figures.histograms(tally.downtimes, DOWNTIME_BOUNDS_S, by_result=False))


@pytest.mark.parametrize("moves_ended_by", [0, 3, 7, len(RECORDS)])
def test_the_records_split_at_a_moment_add_up_to_the_whole(
        store: Store, moves_ended_by: int) -> None:
    until = time.time() - 4500 + 60 * moves_ended_by - 30
    parts = [Tally(tuple(store.move_counts(**window)),
                   tuple(store.report_ranges("total_ms", DURATION_BOUNDS_S, **window)),
                   tuple(store.report_ranges("downtime_ms", DOWNTIME_BOUNDS_S, **window)))
             for window in ({"until": until}, {"after": until})]

    assert _shown(parts[0] + parts[1]) == _shown(_whole(store))
    ended_by = sum(c.moves for c in parts[0].counts)
    assert ended_by == sum(1 for k, s, _r in RECORDS[:moves_ended_by]
                           if s.finished and k is not JobKind.EVACUATE)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_settled_past_is_counted_once_in_a_while_and_new_moves_at_once(
        store: Store) -> None:
    clock = Clock()
    tallies = RecordTallies(store, margin_s=600, resettle_s=900, clock=clock)
    assert _shown(tallies.read()) == _shown(_whole(store))

    # A move ended now is in the next reading; one stamped long ago (its server's clock
    # far behind) only once the settled past is counted again.
    store.add_job(_job(JobKind.MIGRATE, JobState.SUCCEEDED, LiveReport(total_ms=800),
                       time.time()))
    late = _job(JobKind.MIGRATE, JobState.FAILED, LiveReport(total_ms=300), time.time() - 3600)
    store.add_job(late)
    clock.now = 899.0
    shown = tallies.read()
    ended = figures.finished_moves(shown.counts)
    assert ended["migrate", "succeeded"] == figures.finished_moves(
        _whole(store).counts)["migrate", "succeeded"]
    assert ended["migrate", "failed"] == figures.finished_moves(
        _whole(store).counts)["migrate", "failed"] - 1

    clock.now = 900.0
    assert _shown(tallies.read()) == _shown(_whole(store))

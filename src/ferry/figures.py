"""ferry's figures for monitoring, as plain data: what the job records add up to.

The store counts (:mod:`ferry.store.tallies`): finished moves by kind and
result, and how many fell in each range of a histogram's bounds. The
functions here turn those counts into what a monitoring system reads (a
histogram's cumulative buckets, a gauge per host) with no IO, so every
server sharing the database reports the same figures, from the records.
:mod:`ferry.api.metrics` writes them in Prometheus' text format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ferry.job import JobKind, JobState
from ferry.model import Host

# Upper bounds, in seconds. A move takes from a fraction of a second (a small idle
# VM on the lab's hosts) to minutes (a busy VM, a disk copy); a live move's downtime
# is tens of milliseconds when it converges and seconds when it is forced over.
DURATION_BOUNDS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                                        60.0, 120.0, 300.0, 600.0)
DOWNTIME_BOUNDS_S: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                        10.0)

# The kinds of job that move a VM; an evacuation only starts such moves.
MOVE_KINDS: tuple[str, ...] = tuple(k.value for k in JobKind if k is not JobKind.EVACUATE)
FINISHED: tuple[str, ...] = tuple(s.value for s in JobState if s.finished)


@dataclass(frozen=True)
class KindCount:
    """The moves of one kind in one state, and the bytes their reports say were sent."""

    kind: str
    state: str
    moves: int
    data_bytes: int = 0  # live moves' ``data_bytes``; 0 where no report has it


@dataclass(frozen=True)
class RangeCount:
    """Finished moves of one kind and result whose value fell in one range of the bounds:
    ``above`` bounds below it (0: at most the first; len(bounds): above the last)."""

    kind: str
    state: str
    above: int
    moves: int
    total: float  # the sum of their values, in the bounds' unit


@dataclass(frozen=True)
class Histogram:
    """One labelled histogram, as Prometheus keeps it: cumulative counts per upper bound."""

    labels: tuple[str, ...]
    buckets: tuple[tuple[float, int], ...]  # (upper bound, moves at most it); last: +inf
    count: int
    total: float


@dataclass(frozen=True)
class Tally:
    """The store's counts of some of the job records. The counts of two parts of the
    records together (``a + b``) are those of the whole: every function below sums
    the rows of one label."""

    counts: tuple[KindCount, ...] = ()
    durations: tuple[RangeCount, ...] = ()  # seconds, over DURATION_BOUNDS_S
    downtimes: tuple[RangeCount, ...] = ()  # seconds, over DOWNTIME_BOUNDS_S

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.counts + other.counts, self.durations + other.durations,
                     self.downtimes + other.downtimes)


@dataclass(frozen=True)
class Figures:
    """One reading of everything ``/metrics`` shows."""

    records: Tally
    slots_in_use: dict[str, int]  # host -> moves holding a migration slot there
    hosts: tuple[Host, ...]  # as this server's inventory sees them


def finished_moves(counts: Iterable[KindCount]) -> dict[tuple[str, str], int]:
    """(kind, result) -> moves that ended so; every kind and result, 0 included."""
    out = {(kind, result): 0 for kind in MOVE_KINDS for result in FINISHED}
    for c in counts:
        if (c.kind, c.state) in out:
            out[c.kind, c.state] += c.moves
    return out


def sent_bytes(counts: Iterable[KindCount]) -> dict[str, int]:
    """kind -> bytes its moves sent, as their reports say (finished or not)."""
    out = dict.fromkeys(MOVE_KINDS, 0)
    for c in counts:
        if c.kind in out:
            out[c.kind] += c.data_bytes
    return out


def queued_moves(counts: Iterable[KindCount]) -> dict[str, int]:
    """kind -> moves waiting for a slot."""
    out = dict.fromkeys(MOVE_KINDS, 0)
    for c in counts:
        if c.kind in out and c.state == JobState.QUEUED.value:
            out[c.kind] += c.moves
    return out


def histograms(ranges: Iterable[RangeCount], bounds: Sequence[float],
               by_result: bool = True) -> list[Histogram]:
    """Cumulative histograms labelled (kind, result), or (kind,) when not ``by_result``."""
    per_range: dict[tuple[str, ...], list[int]] = {}
    totals: dict[tuple[str, ...], float] = {}
    for r in ranges:
        labels: tuple[str, ...] = (r.kind, r.state) if by_result else (r.kind,)
        counts = per_range.setdefault(labels, [0] * (len(bounds) + 1))
        counts[min(max(r.above, 0), len(bounds))] += r.moves
        totals[labels] = totals.get(labels, 0.0) + r.total
    out = []
    for labels in sorted(per_range):
        running = 0
        buckets = []
        for bound, moves in zip((*bounds, float("inf")), per_range[labels], strict=True):
            running += moves
            buckets.append((bound, running))
        out.append(Histogram(labels, tuple(buckets), running, totals[labels]))
    return out


def slot_use(hosts: Iterable[Host], used: dict[str, int]) -> dict[str, tuple[int, int]]:
    """host -> (slots in use, its limit), for every registered host (in use 0 included)."""
    return {h.name: (used.get(h.name, 0), h.max_migrations) for h in hosts}


def hosts_by_state(hosts: Iterable[Host]) -> dict[str, int]:
    """connected / disconnected -> registered hosts in that state (both always present)."""
    out = {"connected": 0, "disconnected": 0}
    for h in hosts:
        out["connected" if h.connected else "disconnected"] += 1
    return out

"""The job records' figures at each scrape, without reading every report every time.

A move that ended stays as it ended: its state is final, and the numbers its
report gives (total time, downtime, bytes) are not amended. So the records
split at a moment of the database's clock: the moves that ended by it are
counted once (the settled part), and each reading counts only the rest (moves
queued, running, or ended since). The moment lags the database's clock by
:data:`SETTLE_MARGIN_S`, because a server stamps a job's end with its own clock
before it commits; and the settled part is counted afresh every
:data:`RESETTLE_S`, so a move stamped even further back (a server's clock far
behind) is counted then. Counting afresh gives every move once: the counters
only grow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ferry.figures import DOWNTIME_BOUNDS_S, DURATION_BOUNDS_S, Tally
from ferry.store.db import Store

SETTLE_MARGIN_S = 600.0
RESETTLE_S = 900.0


@dataclass(frozen=True)
class _Settled:
    until: float  # database seconds: the moves that ended by then
    read_at: float  # this server's monotonic clock
    tally: Tally


class RecordTallies:
    def __init__(self, store: Store, margin_s: float = SETTLE_MARGIN_S,
                 resettle_s: float = RESETTLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._margin_s = margin_s
        self._resettle_s = resettle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._settled: _Settled | None = None

    def read(self) -> Tally:
        """Every move's counts: the settled part (counted again when due) and the rest."""
        with self._lock:  # two scrapes at once count the settled part once
            settled = self._settled
            if settled is None or self._clock() - settled.read_at >= self._resettle_s:
                until = self._store.database_now() - self._margin_s
                settled = _Settled(until, self._clock(), self._tally(until=until))
                self._settled = settled
        return settled.tally + self._tally(after=settled.until)

    def _tally(self, until: float | None = None, after: float | None = None) -> Tally:
        store = self._store
        return Tally(
            tuple(store.move_counts(until=until, after=after)),
            tuple(store.report_ranges("total_ms", DURATION_BOUNDS_S, until=until, after=after)),
            tuple(store.report_ranges("downtime_ms", DOWNTIME_BOUNDS_S, until=until,
                                      after=after)))

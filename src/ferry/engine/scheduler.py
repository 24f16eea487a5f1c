"""Per-host migration slots: at most N moves per host at once, the rest wait in FIFO order.

The seed limits a host to two migrations at a time, as source or destination;
a storage migration counts on its one host. A move takes a slot on every host
it touches and starts only when all of them have one free. Waiting moves start
by themselves, in the order they were asked for: a move waiting for a host
holds that host's place in line, so a later move cannot overtake it there
(no starvation), while moves on other hosts go ahead.

The decision is :func:`startable`, a pure function; :class:`SlotScheduler`
keeps the queue and the running set and calls back to start a move.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ferry.model import DEFAULT_SETTINGS


@dataclass(frozen=True)
class QueuedMove:
    job_id: str
    hosts: tuple[str, ...]  # every host the move takes a slot on


def startable(queue: list[QueuedMove], running: Mapping[str, int],
              limits: Mapping[str, int]) -> list[str]:
    """The queued moves that may start now, in queue order.

    A move starts when each of its hosts has a free slot and no earlier move
    still waiting wants that host.
    """
    busy = dict(running)
    claimed: set[str] = set()  # hosts an earlier, still waiting move is in line for
    chosen = []
    for move in queue:
        free = all(busy.get(h, 0) < limits.get(h, DEFAULT_SETTINGS.max_migrations)
                   for h in move.hosts)
        if free and not claimed.intersection(move.hosts):
            chosen.append(move.job_id)
            for host in move.hosts:
                busy[host] = busy.get(host, 0) + 1
        else:
            claimed.update(move.hosts)
    return chosen


class SlotScheduler:
    """The FIFO queue and running set; thread-safe. ``limit(host)`` is read at each decision."""

    def __init__(self, limit: Callable[[str], int]) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._queue: list[QueuedMove] = []
        self._starts: dict[str, Callable[[], None]] = {}
        self._running: dict[str, tuple[str, ...]] = {}

    def submit(self, job_id: str, hosts: tuple[str, ...], start: Callable[[], None]) -> None:
        with self._lock:
            self._queue.append(QueuedMove(job_id, tuple(dict.fromkeys(hosts))))
            self._starts[job_id] = start
        self._dispatch()

    def finished(self, job_id: str) -> None:
        """A running move ended: its slots free up, and waiting moves may start."""
        with self._lock:
            self._running.pop(job_id, None)
        self._dispatch()

    def withdraw(self, job_id: str) -> bool:
        """Take a waiting move out of the queue (cancelled); False if it is not waiting."""
        with self._lock:
            before = len(self._queue)
            self._queue = [m for m in self._queue if m.job_id != job_id]
            self._starts.pop(job_id, None)
            withdrawn = len(self._queue) < before
        if withdrawn:
            self._dispatch()
        return withdrawn

    def waiting(self) -> list[str]:
        with self._lock:
            return [m.job_id for m in self._queue]

    def running_on(self) -> dict[str, int]:
        """host -> moves holding a slot there now."""
        with self._lock:
            return self._counts()

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for hosts in self._running.values():
            for host in hosts:
                counts[host] = counts.get(host, 0) + 1
        return counts

    def _dispatch(self) -> None:
        with self._lock:
            hosts = {h for m in self._queue for h in m.hosts}
            limits = {h: self._limit(h) for h in hosts}
            ready = startable(self._queue, self._counts(), limits)
            starts = []
            for job_id in ready:
                move = next(m for m in self._queue if m.job_id == job_id)
                self._queue.remove(move)
                self._running[job_id] = move.hosts
                starts.append(self._starts.pop(job_id))
        for start in starts:
            start()

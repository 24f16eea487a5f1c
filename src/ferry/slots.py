"""Per-host migration slots: at most N moves per host at once, the rest wait in FIFO order.

The seed limits a host to two migrations at a time, as source or destination;
a storage migration counts on its one host. A move takes a slot on every host
it touches and starts only when all of them have one free. Waiting moves start
by themselves, in the order they were asked for: a move waiting for a host
holds that host's place in line, so a later move cannot overtake it there
(no starvation), while moves on other hosts go ahead.

The decision is :func:`startable`, a pure function; the store applies it in
the transaction that claims queued jobs (:mod:`ferry.store.coordination`),
so the rule holds across every server sharing the database.
"""

from __future__ import annotations

from collections.abc import Mapping
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

"""Per-host migration slots: who starts now, who waits, in what order."""

from __future__ import annotations

from ferry.slots import QueuedMove, startable

LIMITS = {"h1": 2, "h2": 2, "h3": 2, "h4": 2}


def test_two_moves_per_host_then_the_third_waits() -> None:
    queue = [QueuedMove("a", ("h1", "h2")), QueuedMove("b", ("h1", "h3")),
             QueuedMove("c", ("h1", "h4"))]
    assert startable(queue, {}, LIMITS) == ["a", "b"]


def test_a_waiting_move_keeps_its_place_on_its_hosts_but_others_go_ahead() -> None:
    queue = [QueuedMove("a", ("h1", "h2")), QueuedMove("b", ("h2", "h3")),
             QueuedMove("c", ("h4",))]
    # h1 is full: a waits; b may not overtake a on h2 (h2 has room, but a is first in
    # line there); c, on a host nobody waits for, goes ahead.
    assert startable(queue, {"h1": 2}, LIMITS) == ["c"]
    # Once h1 frees a slot, a goes first, then b behind it.
    assert startable(queue[:2], {"h1": 1}, LIMITS) == ["a", "b"]


def test_a_storage_move_counts_on_its_one_host_and_limits_are_per_host() -> None:
    queue = [QueuedMove("s", ("h1",)), QueuedMove("m", ("h1", "h2"))]
    assert startable(queue, {"h1": 1}, {**LIMITS, "h1": 1}) == []
    assert startable(queue, {"h1": 1}, LIMITS) == ["s"]

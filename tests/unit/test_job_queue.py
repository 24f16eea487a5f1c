"""Several servers on one database: the FIFO queue, the per-host slots, leases, takeovers.

Each test runs on SQLite and on a real PostgreSQL (marked ``postgres``); the
servers are Store objects of their own on the one database, as separate
``ferry serve`` processes would be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ferry.engine.jobs import JobHandle
from ferry.job import JobKind, JobState, MoveSpec
from ferry.model import Host
from ferry.store.db import Store

LEASE = 30.0


def queue(store: Store, vm: str, hosts: tuple[str, ...]) -> str:
    handle = JobHandle.create(store, JobKind.MIGRATE, vm, hosts[0], hosts[-1], f"uuid-{vm}",
                              spec=MoveSpec(f"uuid-{vm}", hosts[-1]), slot_hosts=hosts)
    return handle.id


def with_hosts(store: Store, limits: dict[str, int]) -> None:
    for name, limit in limits.items():
        store.add_host(Host(name=name, uri=f"qemu+tls://{name}/system", max_migrations=limit))


def test_claims_follow_the_queue_and_the_slots_across_servers(
        open_store: Callable[[], Store]) -> None:
    a, b = open_store(), open_store()
    with_hosts(a, {"h1": 2, "h2": 2, "h3": 2, "h4": 1})
    server_a, server_b = a.register_server("a"), b.register_server("b")
    first = queue(a, "v1", ("h1", "h2"))
    second = queue(b, "v2", ("h1", "h3"))
    third = queue(a, "v3", ("h1", "h4"))  # h1 is full once v1 and v2 run
    fourth = queue(b, "v4", ("h4", "h2"))  # waits: v3 is in line for h4 before it

    claimed_a = [j.id for j in a.claim_startable(server_a, LEASE)]
    claimed_b = [j.id for j in b.claim_startable(server_b, LEASE)]
    assert claimed_a == [first, second] and claimed_b == []
    assert a.job(first).owner == server_a and b.job(second).state is JobState.RUNNING
    assert b.slot_usage() == ({"h1": 2, "h2": 1, "h3": 1}, {"h1": 1, "h4": 2, "h2": 1})

    b.transition(first, server_a, JobState.SUCCEEDED)  # v1 ended: its slots are free
    assert [j.id for j in b.claim_startable(server_b, LEASE)] == [third]
    assert a.claim_startable(server_a, LEASE) == []  # h4's one slot is v3's
    assert a.job(fourth).state is JobState.QUEUED


def test_racing_servers_never_fill_a_host_past_its_limit(
        open_store: Callable[[], Store]) -> None:
    stores = [open_store() for _ in range(4)]
    with_hosts(stores[0], {"src": 2, "d1": 8, "d2": 8, "d3": 8})
    for i in range(6):
        queue(stores[i % 4], f"v{i}", ("src", f"d{i % 3 + 1}"))
    ids = [s.register_server(f"s{i}") for i, s in enumerate(stores)]
    start = threading.Barrier(len(stores))
    claimed: list[str] = []

    def claim(store: Store, server: str) -> None:
        start.wait()
        for _ in range(5):
            claimed.extend(j.id for j in store.claim_startable(server, LEASE))

    threads = [threading.Thread(target=claim, args=pair) for pair in zip(stores, ids,
                                                                          strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(claimed) == len(set(claimed)) == 2, claimed  # two slots on src, each once
    running = [j for j in stores[0].jobs() if j.state is JobState.RUNNING]
    assert len(running) == 2 and stores[0].slot_usage()[0]["src"] == 2


def test_a_dead_servers_jobs_are_taken_over_once_its_lease_runs_out(
        open_store: Callable[[], Store]) -> None:
    a, b, c = open_store(), open_store(), open_store()
    with_hosts(a, {"h1": 2, "h2": 2})
    dead = a.register_server("a")
    job_id = queue(a, "v1", ("h1", "h2"))
    assert [j.id for j in a.claim_startable(dead, 0.5)] == [job_id]
    server_b, server_c = b.register_server("b"), c.register_server("c")
    assert b.take_over_expired(server_b, LEASE) == []  # its lease still holds
    b.renew(server_b, LEASE)  # renewing one's own leases does not touch another's
    time.sleep(0.7)
    won = [b.take_over_expired(server_b, LEASE), c.take_over_expired(server_c, LEASE)]
    assert [len(w) for w in won] == [1, 0]  # exactly one server wins it
    job = c.job(job_id)
    assert job.owner == server_b and job.state is JobState.RUNNING
    assert c.take_over_expired(server_c, LEASE) == []  # b holds it now


def test_a_clean_stop_hands_its_jobs_over_at_once(open_store: Callable[[], Store]) -> None:
    a, b = open_store(), open_store()
    with_hosts(a, {"h1": 2, "h2": 2})
    server_a, server_b = a.register_server("a"), b.register_server("b")
    job_id = queue(a, "v1", ("h1", "h2"))
    a.claim_startable(server_a, LEASE)
    assert [(s.name, s.alive, s.jobs) for s in b.servers(LEASE)] == [("a", True, 1),
                                                                      ("b", True, 0)]
    a.stop_server(server_a)
    assert [s.name for s in b.servers(LEASE)] == ["b"]
    assert [j.id for j in b.take_over_expired(server_b, LEASE)] == [job_id]


def test_a_cancel_through_any_server_reaches_the_owner(open_store: Callable[[], Store]) -> None:
    a, b = open_store(), open_store()
    with_hosts(a, {"h1": 2, "h2": 2})
    server_a = a.register_server("a")
    job_id = queue(a, "v1", ("h1", "h2"))
    a.claim_startable(server_a, LEASE)
    assert a.cancels_for(server_a) == []
    assert b.request_cancel(job_id).state is JobState.CANCELLING
    assert a.cancels_for(server_a) == [job_id]
    a.transition(job_id, server_a, JobState.CANCELLED, error="cancelled")
    assert a.cancels_for(server_a) == []

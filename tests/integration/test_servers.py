"""Two ``ferry serve`` processes on one PostgreSQL, moving real VMs between real hosts.

One server killed mid-move: the other takes the job over within the lease and
records what libvirt shows. Three moves off one host, asked of both servers at
once: libvirt's own job state on the source host never shows more than the
host's two migration slots in use, and the third move starts by itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import LabEnv, progress_of, report_of, wait_until
from served import ServedFerry, ServeFactory, serve_ferry, slow_link, where_it_runs
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ferry.engine.runner import LEASE_S, RENEW_S
from ferry.reports import LiveProgress, LiveReport

pytestmark = [pytest.mark.lab, pytest.mark.postgres]

__all__ = ["serve_ferry", "slow_link"]  # the fixtures, imported for this module's tests

TAKEOVER_MARGIN_S = 3.0  # the runner's poll, a refresh, the database's round trips


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL; dropped afterwards."""
    name = f"ferry_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def two_servers(database: str, serve_ferry: ServeFactory) -> tuple[ServedFerry, ServedFerry]:
    # The database first: it is dropped after the servers are stopped.
    a = serve_ferry("server-a", database)
    b = serve_ferry("server-b", database)  # finds the hosts server A added
    return a, b





def test_a_killed_server_s_move_is_taken_over_within_the_lease(
    lab: LabEnv, make_vm: Callable[..., None], two_servers: tuple[ServedFerry, ServedFerry],
    slow_link: Callable[[str | None], None]
) -> None:
    a, b = two_servers
    make_vm("ra1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat,mem:128")
    assert lab.collector.wait_for_heartbeat("ra1", 90)
    a.client.refresh()
    slow_link("50mbit")  # 128 MiB of dirty memory: the pre-copy lasts half a minute
    job = a.client.migrate("ra1", "host2")
    wait_until(lambda: (progress_of(b.job(job.id), LiveProgress).memory_processed or 0)
               > 2 * 2**20,
               60, "the pre-copy, as server B reads it")
    owner_a = b.job(job.id).owner
    assert owner_a and b.job(job.id).state == "running"

    a.kill()
    killed = time.time()
    wait_until(lambda: b.job(job.id).owner != owner_a, LEASE_S + RENEW_S + TAKEOVER_MARGIN_S,
               "server B to take the job over")
    taken = time.time() - killed
    slow_link(None)
    done = b.wait_finished(job.id, 120)

    assert done.state == "succeeded", (done.error, [e.message for e in done.events])
    took_over = [e for e in done.events if e.phase == "reconcile" and "taken over" in e.message]
    assert len(took_over) == 1 and done.owner and done.owner in took_over[0].message
    assert took_over[0].at - killed <= LEASE_S + RENEW_S + TAKEOVER_MARGIN_S
    reconciled = report_of(done, LiveReport).reconciled
    assert reconciled is not None and reconciled.outcome == "succeeded"
    assert any("completed while ferry was down" in e.message for e in done.events)
    print(f"server B took the job over {taken:.1f} s after server A was killed")
    # What B recorded is what libvirt shows.
    assert where_it_runs(lab, "ra1") == {"host2": "running"}
    assert done.dest_host == "host2"
    seq = lab.collector.last_seq("ra1") or 0
    wait_until(lambda: (lab.collector.last_seq("ra1") or 0) > seq + 20, 30,
               "heartbeats from ra1 on host2")


class SourceJobs:
    """Samples libvirt on the source host: when each VM has an active job (migrates) there.

    One thread per VM asks ``virsh domjobinfo`` every ~0.2 s. A VM's sampled span
    (its first to its last sample showing a job) lies within its real migration, so
    the overlap of the sampled spans never exceeds the real one.
    """

    def __init__(self, lab: LabEnv, host: str, vms: list[str]) -> None:
        self.lab, self.host = lab, host
        self.seen: dict[str, list[float]] = {vm: [] for vm in vms}
        self.samples = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(vm,), daemon=True)
                         for vm in vms]

    def __enter__(self) -> SourceJobs:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, vm: str) -> None:
        while not self._stop.is_set():
            asked = time.monotonic()
            out = self.lab.virsh(self.host, "domjobinfo", vm, check=False).stdout
            self.samples += 1
            job = next((line for line in out.splitlines() if line.startswith("Job type:")), "")
            if job and "None" not in job:
                self.seen[vm].append(asked)
            self._stop.wait(0.2)

    def span(self, vm: str) -> tuple[float, float] | None:
        times = self.seen[vm]
        return (min(times), max(times)) if times else None

    def most_at_once(self) -> int:
        spans = [s for s in map(self.span, self.seen) if s is not None]
        return max((sum(1 for a, b in spans if a <= start <= b) for start, _ in spans),
                   default=0)


def test_three_moves_through_two_servers_never_exceed_the_host_s_two_slots(
    lab: LabEnv, make_vm: Callable[..., None], two_servers: tuple[ServedFerry, ServedFerry],
    slow_link: Callable[[str | None], None]
) -> None:
    a, b = two_servers
    vms = ["rb1", "rb2", "rb3"]
    for vm in vms:
        make_vm(vm, "--host", "host1", "--datastore", "shared", "--memory", "128",
                "--disk", "0", "--workload", "heartbeat")
    for vm in vms:
        assert lab.collector.wait_for_heartbeat(vm, 90)
    # host1's two slots are the limit that acts: host2 could take all three at once.
    for host, slots in (("host1", "2"), ("host2", "3")):
        done = a.ferry("host", "set", host, "--max-migrations", slots)
        assert done.returncode == 0, done.stderr
    a.client.refresh()
    b.client.refresh()
    slow_link("100mbit")  # each copy takes seconds, so overlaps would show
    with SourceJobs(lab, "host1", vms) as libvirt_side:
        with ThreadPoolExecutor(len(vms)) as pool:
            asked = list(pool.map(lambda pair: pair[0].client.migrate(pair[1], "host2"),
                                  zip((a, b, a), vms, strict=True)))
        finished = [b.wait_finished(job.id, 180) for job in asked]
    slow_link(None)

    assert [j.state for j in finished] == ["succeeded"] * 3, [j.error for j in finished]
    for vm in vms:
        assert where_it_runs(lab, vm) == {"host2": "running"}
    # libvirt's side: never more than two migration jobs on host1 at once, and the
    # sampler did see two at once (it would have seen a third).
    print(f"{libvirt_side.samples} samples of host1's jobs; at most "
          f"{libvirt_side.most_at_once()} at once")
    assert libvirt_side.most_at_once() == 2
    spans = {vm: libvirt_side.span(vm) for vm in vms}
    assert all(spans.values()), spans
    # The third waited in the queue and started by itself once a slot was free.
    waited = [j for j in finished if any("waiting for a migration slot" in e.message
                                         for e in j.events)]
    assert len(waited) == 1, [(j.vm, [e.message for e in j.events]) for j in finished]
    third = waited[0]
    others = [j for j in finished if j.id != third.id]
    third_span, other_spans = spans[third.vm], [spans[j.vm] for j in others]
    assert third_span is not None and all(other_spans)
    assert third_span[0] >= min(s[1] for s in other_spans if s)
    assert third.started_at is not None
    assert third.started_at >= min(j.finished_at or 0 for j in others)

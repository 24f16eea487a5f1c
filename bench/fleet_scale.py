"""How ferry's own work grows with the fleet, behind the fake seam.

For each fleet size (default 10, 100, 1,000 and 5,000 hosts, 10 VMs each) it
builds fake hosts, each with a datastore ``shared`` (one storage all hosts
see) and ``local`` (a private folder at the same path on each host, which only
the probe tells apart), registers them in a fresh SQLite store and measures,
through the real control plane:

- a full inventory refresh: wall time and calls to hosts (of them, probes);
- adding one host (``ferry host add``): time, calls to the new host and to
  the others;
- one pre-flight report (``ferry check VM --host H``), median of 5;
- judging one VM against every other host (the reports an evacuation may
  ask for one VM, from one snapshot);
- a whole maintenance evacuation of a host holding 50 VMs: fake migrations
  through the control plane's job runner and migration slots; the time to
  judge and place all 50 (from the evacuation's start, after its full
  refresh), and the time from the call until the job ended;
- 100 queued moves between random hosts claimed and ended by two servers
  polling one database (``--claims-database-url``, e.g. a PostgreSQL; else a
  SQLite file), the slot rule and FIFO queue decided in the database.

Each figure is printed with its growth from the previous size, as a factor
per 10 times the hosts: 10 means it grows linearly, 100 with the square.
The fake's calls are instant, so times are ferry's own; the calls are what
real hosts would each answer over the network. The SQLite store lives in
/dev/shm unless ``--store-dir`` says otherwise: on a disk, every commit waits
for an fsync, and an evacuation commits a few times per VM.

    .venv/bin/python bench/fleet_scale.py [--sizes 10,100,1000,5000] [--store-dir DIR]
        [--claims-database-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert

from ferry.checks.facts import MoveRequest
from ferry.checks.finding import errors
from ferry.engine.controlplane import ControlPlane
from ferry.engine.jobs import JobHandle
from ferry.job import JobKind, JobState, MoveSpec
from ferry.model import VM, Disk, Host, Interface, VMState
from ferry.reports import EvacuationReport
from ferry.store.db import Store
from ferry.store.schema import hosts_table, metadata
from ferry.virt.fake import Backing, FakeHost, FakeWorld

VMS_PER_HOST = 10
EVACUATED_VMS = 50
VM_MIB = 128
PROBE_CALLS = ("create_volume", "list_volumes", "find_volume", "delete_volume", "refresh_pool")


@dataclass
class Figures:
    hosts: int
    refresh_ms: float = 0.0
    refresh_calls: int = 0
    refresh_probe_calls: int = 0
    add_ms: float = 0.0
    add_calls_new_host: int = 0
    add_calls_other_hosts: int = 0
    check_ms: float = 0.0
    judge_all_ms: float = 0.0
    judge_all_reports: int = 0
    evacuation_place_ms: float = 0.0
    evacuation_total_ms: float = 0.0
    evacuation_moved: int = 0
    evacuation_state: str = ""
    claims_ms: float | None = None


def host_name(i: int) -> str:
    return f"h{i:05d}"


def fake_host(world: FakeWorld, name: str, shared: Backing, vms: int) -> FakeHost:
    host = FakeHost(world, name, str(uuid.uuid4()))
    host.add_pool("shared", "/srv/shared", shared)
    host.add_pool("local", "/var/lib/local", Backing())
    host.add_network("Production")
    for i in range(vms):
        vm_name = f"{name}-vm{i:02d}"
        host.add_vm(VM(
            name=vm_name, uuid=str(uuid.uuid4()), host=name, state=VMState.RUNNING,
            memory_kib=VM_MIB * 1024, vcpus=1,
            disks=(Disk("vda", "disk", "file", f"/srv/shared/{vm_name}.qcow2", "qcow2"),),
            interfaces=(Interface(f"52:54:00:{i:02x}:00:01", "network", "Production"),)))
    return host


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


def probe_calls(world: FakeWorld) -> int:
    return sum(h.calls[m] for h in world.hosts.values() for m in PROBE_CALLS)


def measure(size: int, workdir: Path, claims_url: str | None = None) -> Figures:
    figures = Figures(size)
    world = FakeWorld()
    shared = Backing()
    for i in range(size):
        fake_host(world, host_name(i), shared, EVACUATED_VMS if i == 0 else VMS_PER_HOST)
    store = Store(f"sqlite:///{workdir / f'ferry-{size}.db'}")
    for name in world.hosts:  # registered straight in the store: adding is measured below
        store.add_host(Host(name=name, uri=f"qemu+tls://{name}/system", migration_address=name))
    plane = ControlPlane(store, world.connect)
    try:
        world.reset_calls()
        figures.refresh_ms, _ = timed(plane.refresh)
        figures.refresh_calls, figures.refresh_probe_calls = world.calls(), probe_calls(world)

        new = host_name(size)
        fake_host(world, new, shared, VMS_PER_HOST)
        world.reset_calls()
        figures.add_ms, _ = timed(lambda: plane.add_host(new, f"qemu+tls://{new}/system"))
        figures.add_calls_new_host = world.host(new).calls.total()
        figures.add_calls_other_hosts = world.calls() - figures.add_calls_new_host

        vm = next(iter(world.host(host_name(1)).vms.values()))
        request = MoveRequest(vm.uuid, dest_host=host_name(2))
        plane.check(request)  # the first report probes the path between the two hosts
        figures.check_ms = statistics.median(timed(lambda: plane.check(request))[0]
                                             for _ in range(5))

        figures.judge_all_ms, reports = timed(lambda: plane.check_each(vm.uuid))
        figures.judge_all_reports = len(reports)
        blocked = {h: errors(f) for h, f in reports.items() if errors(f)}
        assert not blocked, f"the fleet is not uniform: {blocked}"

        figures.evacuation_place_ms, figures.evacuation_total_ms, moved, state = evacuate(
            plane, host_name(0))
        figures.evacuation_moved, figures.evacuation_state = moved, state
        figures.claims_ms = measure_claims_across_servers(size, workdir, claims_url)
    finally:
        plane.close()
    return figures


def evacuate(plane: ControlPlane, host: str) -> tuple[float, float, int, str]:
    """(ms to judge and place every VM, ms until the job ended, VMs moved, final state).

    Judging and placing runs from the evacuation's first event (the inventory
    refreshed, the VMs listed) to its last VM placed; the total runs from the call
    (full refresh included) to the job's end, every move done."""
    started = time.time()
    job = plane.enter_maintenance(host)
    while not job.state.finished:
        time.sleep(0.01)
        job = plane.get_job(job.id)
    ended = time.time()
    listed = next(e.at for e in job.events if e.phase == "state-check")
    placed = [e.at for e in job.events if e.phase == "register-destination"]
    place_ms = (max(placed) - listed) * 1000 if placed else float("nan")
    moved = job.report.moved if isinstance(job.report, EvacuationReport) else {}
    return place_ms, (ended - started) * 1000, len(moved), job.state.value


CLAIMED_JOBS = 100


def measure_claims_across_servers(size: int, workdir: Path, url: str | None = None) -> float:
    """ms until 100 queued moves, each between two random hosts of the fleet, were all
    claimed and ended by two servers polling one database (as two ``ferry serve`` do).

    Each server claims what the slots allow, ends what it claimed at once, and claims
    again; the slot rule and the FIFO queue are the database's, so the figure is the
    cost of deciding across servers, not of migrating."""
    url = url or f"sqlite:///{workdir / f'claims-{size}.db'}"
    stores = [Store(url), Store(url)]
    try:
        with stores[0].engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):  # a database given is reused
                conn.execute(delete(table))
            conn.execute(insert(hosts_table), [
                {"name": host_name(i), "uri": f"qemu+tls://{host_name(i)}/system",
                 "migration_enabled": True, "maintenance": False, "max_migrations": 2,
                 "migration_network_isolated": False} for i in range(size)])
        rng = random.Random(size)
        for n in range(CLAIMED_JOBS):
            a, b = rng.sample(range(size), 2) if size > 1 else (0, 0)
            JobHandle.create(stores[n % 2], JobKind.MIGRATE, f"vm{n}", host_name(a),
                             host_name(b), f"uuid-{size}-{n}",
                             spec=MoveSpec(f"uuid-{size}-{n}", host_name(b)),
                             slot_hosts=(host_name(a), host_name(b)))
        servers = [store.register_server(f"bench-{i}") for i, store in enumerate(stores)]
        ended = [0, 0]

        def serve(i: int) -> None:
            store, server = stores[i], servers[i]
            while sum(ended) < CLAIMED_JOBS:
                for job in store.claim_startable(server, 30.0):
                    store.transition(job.id, server, JobState.SUCCEEDED)
                    ended[i] += 1

        started = time.perf_counter()
        workers = [threading.Thread(target=serve, args=(i,)) for i in (0, 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return (time.perf_counter() - started) * 1000
    finally:
        for store in stores:
            store.close()


ROWS: tuple[tuple[str, str], ...] = (
    ("full refresh, ms", "refresh_ms"),
    ("full refresh, calls to hosts", "refresh_calls"),
    ("  of them datastore probes", "refresh_probe_calls"),
    ("add one host, ms", "add_ms"),
    ("add one host, calls to it", "add_calls_new_host"),
    ("add one host, calls to the others", "add_calls_other_hosts"),
    ("one pre-flight report, ms (median of 5)", "check_ms"),
    ("one VM judged against every host, ms", "judge_all_ms"),
    ("evacuation of 50 VMs: judged and placed, ms", "evacuation_place_ms"),
    ("evacuation of 50 VMs: job ended, ms", "evacuation_total_ms"),
    ("evacuation of 50 VMs: moved", "evacuation_moved"),
    ("100 queued jobs claimed across two servers, ms", "claims_ms"),
)


def table(results: list[Figures]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "not measured yet"
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    def per_10x(before: Figures, after: Figures, key: str) -> str:
        """The growth from the previous size, as a factor per 10 times the hosts."""
        old, new = getattr(before, key), getattr(after, key)
        if not isinstance(old, int | float) or not isinstance(new, int | float) or old <= 0 \
                or new <= 0:
            return ""
        factor = (new / old) ** (1 / math.log10(after.hosts / before.hosts))
        return f" (×{factor:.1f})"

    header = "| what | " + " | ".join(f"{r.hosts:,} hosts" for r in results) + " |"
    lines = [header, "|---" * (len(results) + 1) + "|"]
    for label, key in ROWS:
        cells = [cell(getattr(results[0], key))] + [
            cell(getattr(r, key)) + per_10x(results[i], r, key)
            for i, r in enumerate(results[1:])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--json")
    parser.add_argument("--store-dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                        help="where the SQLite store goes (default: memory-backed /dev/shm, "
                             "so that a disk's fsync per commit is not counted as ferry's)")
    parser.add_argument("--claims-database-url",
                        help="the database the two servers claim from (e.g. a PostgreSQL "
                             "URL; emptied for each size); default: a SQLite file")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(dir=args.store_dir) as workdir:
        for size in (int(s) for s in args.sizes.split(",")):
            figures = measure(size, Path(workdir), args.claims_database_url)
            print(f"{size} hosts: {json.dumps(asdict(figures))}", file=sys.stderr)
            results.append(figures)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

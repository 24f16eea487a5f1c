"""Evacuating a host in maintenance mode next to the same migrations one at a time.

One run, the same VMs, the same lab: N small VMs (heartbeat only) start on
host1. First ``ferry host maintenance enter host1`` moves them all off, with
the default 2 migration slots per host and placement choosing each
destination; its wall time is measured from the API call to the job's end.
Then host1 leaves maintenance, the VMs come back, and the same N migrations
(each VM to the host the evacuation chose for it) run one after the other,
each waiting for the previous one to finish. The ratio is evacuation / serial
(target <= 0.6). The longest heartbeat gap of any VM and the most moves seen
at once on a host (from the jobs' own timestamps) are reported too.

    .venv/bin/python bench/evacuation_vs_serial.py [--vms 6] [--memory 128] [--json out.json]

Needs root; brings the lab up (3 hosts) if it is not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from benchlib import ferry_on_lab, wait_job

from ferry.cli.client import ApiError
from ferry.reports import EvacuationReport


def most_at_once(jobs: list[Any]) -> dict[str, int]:
    """host -> the most moves that overlapped on it, from started_at/finished_at."""
    peak: dict[str, int] = {}
    for host in {h for j in jobs for h in (j.source_host, j.dest_host) if h}:
        spans = [(j.started_at or 0, j.finished_at or 0) for j in jobs
                 if host in (j.source_host, j.dest_host)]
        peak[host] = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=6)
    parser.add_argument("--memory", type=int, default=128)
    parser.add_argument("--json")
    args = parser.parse_args()

    _lab, server, client = ferry_on_lab()
    collector = server.collector
    assert collector is not None
    names = [f"bev{n}" for n in range(1, args.vms + 1)]
    result: dict[str, Any] = {"vms": args.vms, "memory_mib": args.memory}
    try:
        client.exit_maintenance("host1")
        for name in names:
            try:
                client.delete_vm(name)
            except ApiError:
                pass
            client.create_vm(name=name, host="host1", datastore="shared",
                             memory_mib=args.memory, vcpus=1, disk_mib=0, heartbeat=True,
                             memory_workload_mib=0)
        for name in names:
            if not collector.wait_for_heartbeat(name, 120):
                raise SystemExit(f"{name} sent no heartbeat")
        time.sleep(3)

        since = time.monotonic()
        started = time.monotonic()
        evacuation = wait_job(client, client.enter_maintenance("host1").id)
        result["evacuation_s"] = time.monotonic() - started
        if evacuation.state.value != "succeeded":
            raise SystemExit(f"evacuation failed: {evacuation.error}")
        report = evacuation.report
        assert isinstance(report, EvacuationReport)
        placement = report.moved
        t0 = evacuation.created_at
        result["evacuation_events"] = [(round(e.at - t0, 3), e.message)
                                       for e in client.get_job(evacuation.id).events]
        moves = [client.get_job(j) for j in report.jobs.values()]
        result["placement"] = placement
        result["evacuation_peak"] = most_at_once(moves)
        result["evacuation_move_s"] = sorted(
            round((m.finished_at or 0) - (m.started_at or 0), 2) for m in moves)
        result["evacuation_moves"] = sorted(
            (m.vm, round(m.created_at - t0, 3), round((m.started_at or 0) - t0, 3),
             round((m.finished_at or 0) - t0, 3)) for m in moves)
        client.exit_maintenance("host1")
        back = [client.migrate(name, "host1").id for name in names]
        for job_id in back:
            if wait_job(client, job_id).state.value != "succeeded":
                raise SystemExit("could not bring the VMs back to host1")

        started = time.monotonic()
        serial = []
        for name in names:
            serial.append(wait_job(client, client.migrate(name, placement[name]).id))
        result["serial_s"] = time.monotonic() - started
        if any(j.state.value != "succeeded" for j in serial):
            raise SystemExit("a serial migration failed")
        result["serial_move_s"] = sorted(
            round((m.finished_at or 0) - (m.started_at or 0), 2) for m in serial)
        gaps = [collector.largest_gap(name, since) for name in names]
        result["max_heartbeat_gap_ms"] = max(round(g.gap_ms) for g in gaps if g is not None)
        result["heartbeats_lost"] = sum(g.lost for g in gaps if g is not None)
        result["ratio"] = result["evacuation_s"] / result["serial_s"]
    finally:
        for name in names:
            try:
                client.delete_vm(name)
            except ApiError as err:
                print(f"cleanup: {name}: {err.message}", file=sys.stderr)
        try:
            client.exit_maintenance("host1")
        except ApiError:
            pass
        server.stop()

    print(f"{args.vms} VMs of {args.memory} MiB (heartbeat only), host1 -> "
          f"{', '.join(sorted(set(result['placement'].values())))}, 2 slots per host")
    print(f"evacuation (maintenance enter):  {result['evacuation_s']:.1f} s  "
          f"moves {result['evacuation_move_s']} s; most at once per host "
          f"{result['evacuation_peak']}")
    print(f"same migrations one at a time:   {result['serial_s']:.1f} s  "
          f"moves {result['serial_move_s']} s")
    print(f"ratio evacuation / serial: {result['ratio']:.2f} (target <= 0.6)")
    print(f"longest heartbeat gap of any VM: {result['max_heartbeat_gap_ms']} ms, "
          f"lost {result['heartbeats_lost']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

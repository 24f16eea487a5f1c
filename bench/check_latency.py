"""How long the full pre-flight report takes for one VM against one destination.

Through the REST API, as ``ferry check`` asks it, in the lab. The first call
after a refresh also probes reachability from the source (cached for 30 s);
the figure to quote is the warm one: inventory refreshed, probe cached.

    .venv/bin/python bench/check_latency.py [--calls 30]

Needs root; brings the lab up (3 hosts) if it is not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchlib import ferry_on_lab

from ferry.cli.client import ApiError

VM = "bench-check"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    _lab, server, client = ferry_on_lab()
    try:
        try:
            client.delete_vm(VM)
        except ApiError:
            pass
        client.create_vm(name=VM, host="host1", datastore="shared", memory_mib=128, vcpus=1,
                         disk_mib=16, heartbeat=True, memory_workload_mib=0)
        started = time.perf_counter()
        client.refresh()
        refresh_s = time.perf_counter() - started
        started = time.perf_counter()
        first = client.check(VM, host="host2")
        cold_s = time.perf_counter() - started
        timings = []
        for _ in range(args.calls):
            started = time.perf_counter()
            report = client.check(VM, host="host2")
            timings.append(time.perf_counter() - started)
        timings.sort()
        ms = [t * 1000 for t in timings]
        print(f"inventory refresh (3 hosts, datastore probes): {refresh_s * 1000:.0f} ms")
        print(f"first check (reachability probed from host1): {cold_s * 1000:.0f} ms, "
              f"{len(first.findings)} rows, allowed={first.allowed}")
        print(f"warm check x{len(ms)}: min {ms[0]:.0f} ms, median {statistics.median(ms):.0f} "
              f"ms, p90 {ms[int(len(ms) * 0.9) - 1]:.0f} ms, max {ms[-1]:.0f} ms; "
              f"{len(report.findings)} rows, {report.errors} errors, "
              f"{report.warnings} warnings")
    finally:
        try:
            client.delete_vm(VM)
        except ApiError:
            pass
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

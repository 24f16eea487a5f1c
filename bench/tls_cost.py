"""What QEMU's TLS costs a live migration on this machine: the same VM moved with
``virsh migrate --tls`` and without, alternately, on the same lab link.

ferry asks for TLS on every move (clear text only where the admin allows it for a
host that cannot do TLS), so this is the price of its default. Each round moves the
VM host1 -> host2 encrypted and back host2 -> host1 in clear text, then the next
round the other way round, so neither direction favours one mode.

    .venv/bin/python bench/tls_cost.py [--rounds 3] [--memory 1024] [--workload-mib 256]
        [--link none] [--limit 180]

Needs root; brings the lab up (3 hosts) if it is not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from benchlib import ferry_on_lab, fresh_busy_vm, median_of
from migration_vs_virsh import VM, fmt, virsh_round, where

from ferry.cli.client import ApiError
from ferry.lab.lab import set_link


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--workload-mib", type=int, default=256)
    parser.add_argument("--link", default="none")
    parser.add_argument("--limit", type=float, default=180.0)
    args = parser.parse_args()

    lab, server, client = ferry_on_lab()
    assert server.collector is not None
    rows: list[dict[str, Any]] = []
    try:
        fresh_busy_vm(client, server.collector, VM, args.memory, args.workload_mib)
        for host in lab.hosts:
            set_link(host.name, None if args.link == "none" else args.link)
        for n in range(args.rounds):
            order = ((True, False) if n % 2 == 0 else (False, True))
            for tls in order:
                src = where(lab)
                dest = "host2" if src == "host1" else "host1"
                row = virsh_round(lab, server.collector, src, dest, args.limit,
                                  ("--tls",) if tls else ())
                rows.append({"tls": tls, **row})
                print(rows[-1], flush=True)
    finally:
        for host in lab.hosts:
            set_link(host.name, None)
        try:
            client.refresh()
            client.delete_vm(VM)
        except ApiError:
            pass
        server.stop()

    print(f"\nVM {args.memory} MiB, {args.workload_mib} MiB rewritten continuously, TCG "
          f"guest, link {args.link}, {args.rounds} round(s) each; medians")
    print(f"{'stream':11} {'ok':>5} {'total s':>8} {'downtime ms':>12} {'hb gap ms':>10} "
          f"{'sent MiB':>9} {'iter':>5}")
    for tls in (True, False):
        mine = [r for r in rows if r["tls"] is tls]
        ok = [r for r in mine if r["ok"]]

        def med(key: str, ok: list[dict[str, Any]] = ok) -> float | None:
            return median_of(ok, key)

        print(f"{'TLS' if tls else 'clear text':11} {len(ok)}/{len(mine):<3} "
              f"{fmt(med('total_s'), '8.1f')} {fmt(med('downtime_ms'), '12.0f')} "
              f"{fmt(med('hb_gap_ms'), '10.0f')} {fmt(med('data_mib'), '9.0f')} "
              f"{fmt(med('iterations'), '5.0f')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ferry host maintenance enter|exit HOST``: empty a host for maintenance, and take it back."""

from __future__ import annotations

import argparse
import sys

from ferry.api.schemas import JobOut
from ferry.cli.main import Commands, Context, _dump_json, wait_for_job
from ferry.reports import EvacuationReport


def evacuation_report(job: JobOut) -> str:
    r = job.report if isinstance(job.report, EvacuationReport) else EvacuationReport()
    lines = [f"Evacuation of {r.host or job.vm}: {job.state.value.upper()} "
             f"in {(r.total_ms or 0) / 1000:.1f} s"]
    for vm, host in sorted(r.moved.items()):
        lines.append(f"  moved      {vm} -> {host}")
    for vm, why in sorted(r.not_moved.items()):
        lines.append(f"  NOT MOVED  {vm}: {why}")
    if not r.moved and not r.not_moved:
        lines.append("  no VM was on the host")
    return "\n".join(lines)


def _maintenance(args: argparse.Namespace, ctx: Context) -> int:
    if args.action == "exit":
        host = ctx.client.exit_maintenance(args.host)
        print(f"{host.name}: out of maintenance mode; VMs may be placed and started there")
        return 0
    job = ctx.client.enter_maintenance(args.host)
    print(f"{args.host}: in maintenance mode; moving its VMs off (job {job.id})",
          file=sys.stderr)
    job = wait_for_job(ctx, job)
    print(_dump_json(job) if args.json else evacuation_report(job))
    return 0 if job.state.value == "succeeded" else 6


def register(commands: Commands) -> None:
    p = commands.add("maintenance", _maintenance,
                     "Enter maintenance mode (move every VM off the host) or exit it",
                     group="host")
    p.add_argument("action", choices=["enter", "exit"])
    p.add_argument("host")
    p.add_argument("--json", action="store_true", help="print the final job as JSON")

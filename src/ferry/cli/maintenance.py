"""``ferry host maintenance enter|exit HOST``: empty a host for maintenance, and take it back."""

from __future__ import annotations

import argparse
import sys

from rich.console import Group
from rich.text import Text

from ferry.api.schemas import JobOut
from ferry.cli import render
from ferry.cli.console import show
from ferry.cli.main import Commands, Context, _dump_json, wait_for_job
from ferry.reports import EvacuationReport


def evacuation_report(job: JobOut) -> Group:
    r = job.report if isinstance(job.report, EvacuationReport) else EvacuationReport()
    head = Text.assemble(f"Evacuation of {r.host or job.vm}: ",
                         render.job_state(job, upper=True),
                         f" in {(r.total_ms or 0) / 1000:.1f} s")
    if not r.moved and not r.not_moved:
        return Group(head, Text("  no VM was on the host"))
    rows: list[tuple[object, object]] = [("moved", f"{vm} -> {host}")
                                      for vm, host in sorted(r.moved.items())]
    rows += [(Text("NOT MOVED", style=render.ERROR), f"{vm}: {why}")
             for vm, why in sorted(r.not_moved.items())]
    return Group(head, render.indent(render.fields(rows, label_width=len("NOT MOVED"))))


def _maintenance(args: argparse.Namespace, ctx: Context) -> int:
    if args.action == "exit":
        host = ctx.client.exit_maintenance(args.host)
        print(f"{host.name}: out of maintenance mode; VMs may be placed and started there")
        return 0
    job = ctx.client.enter_maintenance(args.host)
    print(f"{args.host}: in maintenance mode; moving its VMs off (job {job.id})",
          file=sys.stderr)
    job = wait_for_job(ctx, job)
    if args.json:
        print(_dump_json(job))
    else:
        show(evacuation_report(job))
    return 0 if job.state.value == "succeeded" else 6


def register(commands: Commands) -> None:
    p = commands.add("maintenance", _maintenance,
                     "Enter maintenance mode (move every VM off the host) or exit it",
                     group="host")
    p.add_argument("action", choices=["enter", "exit"])
    p.add_argument("host")
    p.add_argument("--json", action="store_true", help="print the final job as JSON")

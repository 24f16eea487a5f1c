"""``ferry policy list``: the convergence policies a live move can run with."""

from __future__ import annotations

import argparse

from ferry.cli import render
from ferry.cli.console import show
from ferry.cli.main import Commands, Context


def _list(args: argparse.Namespace, ctx: Context) -> int:
    policies = ctx.client.list_policies()
    if args.json:
        print("[" + ",".join(p.model_dump_json() for p in policies) + "]")
        return 0
    show(render.table(("POLICY", "POST-COPY", "THROTTLE", "GIVES UP AFTER", "WHAT IT DOES"), [
        (p.name, "yes" if p.allow_postcopy else "no",
         ("no" if not p.auto_converge else "QEMU's steps" if p.throttle_initial_pct is None
          else f"{p.throttle_initial_pct} % +{p.throttle_increment_pct} %/round"),
         f"{p.max_seconds} s", p.description) for p in policies]))
    return 0


def register(commands: Commands) -> None:
    commands.group("policy", "Convergence policies of live moves")
    parser = commands.add("list", _list, "List the convergence policies ('ferry migrate "
                          "--policy NAME' chooses one)", group="policy")
    parser.add_argument("--json", action="store_true")

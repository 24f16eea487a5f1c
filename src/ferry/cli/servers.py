"""``ferry servers``: the ferry servers sharing one database, and the jobs each runs."""

from __future__ import annotations

import argparse
import time

from rich.text import Text

from ferry.cli import render
from ferry.cli.console import show
from ferry.cli.main import Commands, Context


def _servers(args: argparse.Namespace, ctx: Context) -> int:
    servers = ctx.client.list_servers()
    if args.json:
        print("[" + ",".join(s.model_dump_json() for s in servers) + "]")
        return 0
    now = time.time()
    # The server that answered is listed first: it is the one this CLI talks to.
    show(render.table(("SERVER", "ID", "STATE", "LAST SEEN", "JOBS"), [
        (f"{s.name}{' (this one)' if i == 0 else ''}", s.id,
         "alive" if s.alive else Text("lease expired", style=render.WARNING),
         f"{max(0.0, now - s.seen_at):.0f} s ago",
         s.jobs) for i, s in enumerate(servers)], whole=("ID",)))
    return 0


def register(commands: Commands) -> None:
    parser = commands.add("servers", _servers,
                          "List the ferry servers sharing this server's database")
    parser.add_argument("--json", action="store_true")

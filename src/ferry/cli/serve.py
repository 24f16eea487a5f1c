"""``ferry serve``: run the control plane and its REST API."""

from __future__ import annotations

import argparse
import dataclasses

from ferry import config
from ferry.cli.main import Commands, Context


def _serve(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.server import serve

    settings = config.ServerSettings.from_env()
    if args.listen:
        settings = dataclasses.replace(settings, listen=args.listen)
    if args.port:
        settings = dataclasses.replace(settings, port=args.port)
    print(f"ferry: serving on http://{settings.listen}:{settings.port} "
          f"(token in {config.token_file()}, database {settings.database_url})", flush=True)
    serve(settings)
    return 0


def register(commands: Commands) -> None:
    parser = commands.add("serve", _serve, "Run the ferry control plane and its REST API")
    parser.add_argument("--listen", help=f"address to bind (default {config.DEFAULT_LISTEN})")
    parser.add_argument("--port", type=int, help=f"port (default {config.DEFAULT_PORT})")

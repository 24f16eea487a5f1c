"""``ferry serve``: run the control plane and its REST API."""

from __future__ import annotations

import argparse
import dataclasses

from ferry import config
from ferry.cli.main import Commands, Context


def _serve(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.api.tls import server_tls
    from ferry.server import serve

    settings = config.ServerSettings.from_env()
    if args.listen:
        settings = dataclasses.replace(settings, listen=args.listen)
    if args.port:
        settings = dataclasses.replace(settings, port=args.port)
    if args.tls_cert:
        settings = dataclasses.replace(settings, tls_cert=args.tls_cert)
    if args.tls_key:
        settings = dataclasses.replace(settings, tls_key=args.tls_key)
    scheme = "https" if server_tls(settings) else "http"
    print(f"ferry: serving on {scheme}://{settings.listen}:{settings.port} "
          f"(token in {config.token_file()}, database {settings.database_url})", flush=True)
    serve(settings)
    return 0


def register(commands: Commands) -> None:
    parser = commands.add("serve", _serve, "Run the ferry control plane and its REST API")
    parser.add_argument("--listen", help=f"address to bind (default {config.DEFAULT_LISTEN}); "
                        "any but loopback needs --tls-cert and --tls-key")
    parser.add_argument("--port", type=int, help=f"port (default {config.DEFAULT_PORT})")
    parser.add_argument("--tls-cert", help="PEM certificate (chain) to serve HTTPS with "
                        f"(default ${config.TLS_CERT_ENV})")
    parser.add_argument("--tls-key", help="its unencrypted PEM private key "
                        f"(default ${config.TLS_KEY_ENV})")

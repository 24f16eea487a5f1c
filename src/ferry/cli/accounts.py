"""``ferry user``, ``ferry token`` and ``ferry audit``: who may use ferry, and what they did."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime

from ferry.auth.roles import Role
from ferry.auth.tokens import DEFAULT_DAYS, MAX_DAYS
from ferry.cli import render
from ferry.cli.console import show
from ferry.cli.main import Commands, Context

_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``1h``, ``2d``, ``30m`` (that long ago) or an ISO time (local unless it says) -> unix."""
    found = _RELATIVE.fullmatch(text.strip())
    if found is not None:
        ago = int(found.group(1)) * _UNIT_S[found.group(2)]
        return (time.time() if now is None else now) - ago
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time ago (30m, 1h, 2d, 1w) nor an ISO time "
            "(2026-12-01T09:00)") from None


def _user_add(args: argparse.Namespace, ctx: Context) -> int:
    user = ctx.client.add_user(args.name, args.role)
    show(render.users_table([user]))
    return 0


def _user_list(_args: argparse.Namespace, ctx: Context) -> int:
    show(render.users_table(ctx.client.list_users()))
    return 0


def _user_remove(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.remove_user(args.name)
    print(f"removed user {args.name} and their tokens")
    return 0


def _token_create(args: argparse.Namespace, ctx: Context) -> int:
    created = ctx.client.create_token(args.user, args.label or "", args.expires)
    # The token alone on stdout (`ferry token create > file`); what it is, on stderr.
    print(f"token {created.id} of user {created.user}"
          f"{f' ({created.label})' if created.label else ''}, valid until "
          f"{render.clock(created.expires_at)}; it is shown only now:", file=sys.stderr)
    print(created.token)
    return 0


def _token_list(args: argparse.Namespace, ctx: Context) -> int:
    found = ctx.client.list_tokens(args.user)
    show(render.tokens_table(found) if found else "no tokens")
    return 0


def _token_revoke(args: argparse.Namespace, ctx: Context) -> int:
    token = ctx.client.revoke_token(args.id)
    print(f"token {token.id} of user {token.user}: revoked; it no longer works")
    return 0


def _audit(args: argparse.Namespace, ctx: Context) -> int:
    entries = ctx.client.audit(args.user, args.since, args.limit)
    show(render.audit_table(entries) if entries else "no change requests recorded")
    return 0


def register(commands: Commands) -> None:
    roles = [r.value for r in Role]
    commands.group("user", "Who may use ferry, and with which role (admin only)")
    p = commands.add("add", _user_add, "Add a user", group="user")
    p.add_argument("name", help="lowercase letters, digits, '.', '_', '-'")
    p.add_argument("--role", required=True, choices=roles,
                   help="viewer: reads; operator: moves, power, VMs, maintenance; admin: all")
    commands.add("list", _user_list, "List users", group="user")
    p = commands.add("remove", _user_remove, "Remove a user and their tokens", group="user")
    p.add_argument("name")

    commands.group("token", "API tokens: your own (an admin: anyone's)")
    p = commands.add("create", _token_create, "Make a token; its secret is printed once",
                     group="token")
    p.add_argument("--user", help="whose token (default: yours; another's: admin only)")
    p.add_argument("--label", help="what it is for, e.g. the machine that uses it")
    p.add_argument("--expires", type=int, metavar="DAYS",
                   help=f"days it works (default {DEFAULT_DAYS}, at most {MAX_DAYS})")
    p = commands.add("list", _token_list, "List tokens (never their secrets)", group="token")
    p.add_argument("--user", help="whose tokens (default: yours; an admin sees all)")
    p = commands.add("revoke", _token_revoke, "Revoke a token: it stops working at once",
                     group="token")
    p.add_argument("id")

    p = commands.add("audit", _audit, "Who asked for which change, and what came of it "
                     "(admin only)")
    p.add_argument("--user", help="only this user's requests")
    p.add_argument("--since", type=parse_since, metavar="T",
                   help="from T on: an ISO time or a time ago (30m, 1h, 2d)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (the newest)")

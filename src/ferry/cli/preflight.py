"""``ferry check`` (the pre-flight report) and ``ferry host set`` (what it judges against)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ferry.cli import render, render_jobs
from ferry.cli.console import show
from ferry.cli.main import VM_HELP, Commands, Context

REFUSED_EXIT = 4  # the same status a refused migration exits with
_UNSET = object()  # an option not given (None: given as 'none')


def _on_off(value: str) -> bool:
    if value in ("on", "yes", "true"):
        return True
    if value in ("off", "no", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, not {value!r}")


def _number_or_none(value: str) -> int | None:
    """A limit as typed: a whole number, or 'none' (None) to clear it."""
    if value == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or none, not {value!r}")\
            from None


def _check(args: argparse.Namespace, ctx: Context) -> int:
    where: dict[str, Any] = {"host": args.host, "datastore": args.datastore, "cold": args.cold}
    if args.disk:
        where["disks"] = args.disk.split(",")
    if args.format:
        where["disk_format"] = args.format
    report = ctx.client.check(args.vm, **where)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        show(render_jobs.check_report(report))
    return 0 if report.allowed else REFUSED_EXIT


def _host_set(args: argparse.Namespace, ctx: Context) -> int:
    changes: dict[str, Any] = {}
    for key in ("migration_enabled", "migration_address", "migration_interface",
                "migration_network_isolated", "allow_cleartext_migration", "max_migrations"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    for option, key, clear in (("memory_limit", "memory_limit_mib", "clear_memory_limit"),
                               ("migration_bandwidth", "migration_bandwidth_mibps",
                                "clear_migration_bandwidth")):
        value = getattr(args, option)
        if value is _UNSET:
            continue
        if value is None:
            changes[clear] = True
        else:
            changes[key] = value
    host = ctx.client.update_host(args.name, **changes)
    show(render.hosts_table([host]))
    show(render.host_settings(host))
    return 0


def register(commands: Commands) -> None:
    p = commands.add("check", _check, "Pre-flight report: every requirement of a move, judged now")
    p.add_argument("vm", help=VM_HELP)
    p.add_argument("--host", help="destination host (live migration)")
    p.add_argument("--datastore", help="destination datastore (storage migration)")
    p.add_argument("--cold", action="store_true", help="the VM moves powered off")
    p.add_argument("--disk", help="comma list of disk targets to move (default: all)")
    p.add_argument("--format", choices=["same", "thin", "thick-lazy", "thick-eager"])
    p.add_argument("--json", action="store_true")

    p = commands.add("set", _host_set, "Change what ferry knows about a host", group="host")
    p.add_argument("name")
    p.add_argument("--migration", dest="migration_enabled", type=_on_off,
                   help="on or off: whether VMs may migrate to and from this host")
    p.add_argument("--migration-address", help="address of the host's migration network")
    p.add_argument("--migration-interface", help="the NIC carrying migration traffic")
    p.add_argument("--isolated", dest="migration_network_isolated", type=_on_off,
                   help="on if the migration network is isolated from other traffic")
    p.add_argument("--allow-cleartext-migration", type=_on_off,
                   help="on lets a move to or from this host go unencrypted when the pair "
                        "cannot do TLS (the pre-flight warns); off (default) refuses it")
    p.add_argument("--max-migrations", type=int, help="migrations at once (default 2)")
    p.add_argument("--memory-limit", type=_number_or_none, default=_UNSET,
                   help="MiB VMs may use on this host, or 'none'")
    p.add_argument("--migration-bandwidth", metavar="MIBPS", type=_number_or_none,
                   default=_UNSET,
                   help="MiB/s a live move to or from this host may use on the migration "
                        "network, or 'none'")

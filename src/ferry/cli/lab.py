"""``ferry lab up|status|down|link|cert|cpu``: the multi-host lab on this machine.

The lab is a local tool (it builds namespaces and daemons here), so these
commands run directly rather than through the API.
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.text import Text

from ferry.cli import render
from ferry.cli.console import show
from ferry.cli.main import Commands, Context
from ferry.lab import layout


def _print_state(state: object) -> None:
    from ferry.lab.lab import LabState

    assert isinstance(state, LabState)
    print(f"lab: {len(state.hosts)} host(s), guests run with "
          f"{'KVM' if state.accel == 'kvm' else 'TCG (software emulation)'}, MTU {state.mtu}")
    rows = []
    for host in state.hosts:
        health = Text("up") if host.healthy else Text(
            "running, not answering" if host.alive else "down", style=render.ERROR)
        rows.append((host.name, host.uri, host.migration_address, host.link or "unshaped",
                     health.append(f" (pid {host.libvirtd_pid})")))
    show(render.table(("HOST", "URI", "MIGRATION", "LINK", "LIBVIRTD"), rows))
    print(f"datastores: {layout.SHARED_POOL} (all hosts), {layout.LOCAL_POOL} (one per host); "
          f"networks: {layout.PRODUCTION_NETWORK} (all hosts), "
          f"{layout.ISOLATED_NETWORK} ({state.hosts[-1].name}, internal only)")


def _up(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.lab.lab import lab_up

    started = time.monotonic()
    state = lab_up(hosts=args.hosts, link=args.link, mtu=args.mtu)
    _print_state(state)
    print(f"lab ready in {time.monotonic() - started:.1f} s; register its hosts with "
          "'ferry host add NAME URI'")
    return 0


def _status(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.lab.lab import lab_status

    state = lab_status()
    if state is None:
        print("lab: not up ('ferry lab up' builds it)")
        return 1
    _print_state(state)
    return 0 if state.healthy else 1


def _down(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.lab.lab import lab_down

    lab_down()
    print("lab: removed (namespaces, bridges, daemons, guests and files)")
    return 0


def _cert(args: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path

    from ferry import config
    from ferry.errors import LabError
    from ferry.lab import tls

    if not (layout.PKI_DIR / tls.CA_CERT_FILE).exists():
        raise LabError(f"no lab CA in {layout.PKI_DIR}: build the lab first (ferry lab up)")
    names = args.address or [layout.MIGRATION_GATEWAY]
    out = Path(args.out) if args.out else config.ferry_home() / "tls"
    cert, key = tls.install_api_cert(tls.load_ca(layout.PKI_DIR), out, names)
    print(f"lab: certificate for ferry's API at {', '.join(names)}, signed by the lab CA:")
    print(f"  {config.TLS_CERT_ENV}={cert}")
    print(f"  {config.TLS_KEY_ENV}={key}")
    print(f"for the CLI: {config.CA_FILE_ENV}={layout.PKI_DIR / tls.CA_CERT_FILE} "
          f"FERRY_URL=https://{_url_host(names[0])}:{config.DEFAULT_PORT}")
    return 0


def _url_host(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def _cpu(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.lab.cpu import hide_cpu_features, restore_cpu

    if args.restore:
        restore_cpu(args.host)
        print(f"lab: {args.host} offers its full CPU again")
        return 0
    features = [f for f in (args.hide or "").split(",") if f]
    if not features:
        print("ferry: error: give --hide FEATURE[,FEATURE] or --restore", file=sys.stderr)
        return 2
    hide_cpu_features(args.host, features)
    print(f"lab: {args.host}'s QEMU now offers a CPU without {', '.join(features)}")
    return 0


def _link(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.lab.lab import cut_link, restore_link, set_link

    how = args.how.lower()
    if how == "down":
        cut_link(args.host)
        print(f"lab: {args.host}'s link is unplugged: its migrations and libvirtd are cut off "
              f"(ferry lab link {args.host} up plugs it back)")
    elif how == "up":
        restore_link(args.host)
        print(f"lab: {args.host}'s link is plugged in again")
    elif how == "unshaped":
        set_link(args.host, None)
        print(f"lab: {args.host}'s link runs at full speed")
    else:
        set_link(args.host, how)
        print(f"lab: {args.host}'s link is shaped to {how}")
    return 0


def register(commands: Commands) -> None:
    up = commands.add("up", _up, "Build the lab: N libvirt hosts on this machine", group="lab")
    up.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    up.add_argument("--link", help="shape each host's migration link, e.g. 1gbit")
    up.add_argument("--mtu", type=int, default=1500, help="migration network MTU")
    commands.add("status", _status, "Show the lab's hosts and whether they answer", group="lab")
    commands.add("down", _down, "Remove everything the lab made", group="lab")
    cert = commands.add("cert", _cert, "Issue a certificate of the lab CA for ferry's API "
                        "(HTTPS)", group="lab")
    cert.add_argument("--address", action="append",
                      help="an address or host name the server is reached at; repeat for more "
                      f"(default {layout.MIGRATION_GATEWAY}, the lab's bridge on this machine)")
    cert.add_argument("--out", help="directory for api-cert.pem and api-key.pem "
                      "(default $FERRY_HOME/tls)")
    link = commands.add("link", _link, "Cut, restore or shape one lab host's link while "
                        "moves run", group="lab")
    link.add_argument("host")
    link.add_argument("how", metavar="down|up|unshaped|RATE",
                      help="down: unplug it; up: plug it back; unshaped: full speed; a tc "
                      "rate such as 1gbit or 100mbit: shape it")
    cpu = commands.add("cpu", _cpu, "Give one lab host an older CPU", group="lab")
    cpu.add_argument("host")
    cpu.add_argument("--hide", help="comma list of CPU features the host should lack, e.g. aes")
    cpu.add_argument("--restore", action="store_true", help="give the host its full CPU back")

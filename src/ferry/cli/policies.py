"""``ferry policy list|show|set|unset``: the convergence policies a live move can run
with, and the defaults a VM or a cluster gives its moves."""

from __future__ import annotations

import argparse

from ferry.cli import render
from ferry.cli.console import show
from ferry.cli.main import Commands, Context
from ferry.errors import InputError


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


def _show(args: argparse.Namespace, ctx: Context) -> int:
    choice = ctx.client.vm_policy(args.vm)
    if args.json:
        print(choice.model_dump_json())
        return 0
    print(f"a live move of {choice.vm} runs with {choice.policy} ({choice.why}) unless "
          "'ferry migrate --policy NAME' asks for another")
    return 0


def _target(args: argparse.Namespace) -> tuple[str, str]:
    if bool(args.cluster) == bool(args.vm):
        raise InputError("name one of --cluster CLUSTER or --vm VM")
    return ("cluster", args.cluster) if args.cluster else ("vm", args.vm)


def _set(args: argparse.Namespace, ctx: Context) -> int:
    return _apply(args, ctx, args.policy)


def _unset(args: argparse.Namespace, ctx: Context) -> int:
    return _apply(args, ctx, None)


def _apply(args: argparse.Namespace, ctx: Context, policy: str | None) -> int:
    kind, name = _target(args)
    if kind == "cluster":
        cluster = ctx.client.set_cluster_policy(name, policy)
        chosen = cluster.migration_policy or "ferry's default"
        print(f"cluster {cluster.name}: its VMs' moves run with {chosen} unless a VM has its "
              "own default or a move asks for another")
        return 0
    choice = ctx.client.set_vm_policy(name, policy)
    print(f"VM {choice.vm}: its moves run with {choice.policy} ({choice.why}) unless a move "
          "asks for another")
    return 0


def register(commands: Commands) -> None:
    commands.group("policy", "Convergence policies of live moves")
    parser = commands.add("list", _list, "List the convergence policies ('ferry migrate "
                          "--policy NAME' chooses one)", group="policy")
    parser.add_argument("--json", action="store_true")
    parser = commands.add("show", _show, "Which policy a live move of a VM runs with when "
                          "none is asked, and why", group="policy")
    parser.add_argument("vm")
    parser.add_argument("--json", action="store_true")
    parser = commands.add("set", _set, "Give a VM or a cluster a default policy",
                          group="policy")
    parser.add_argument("policy", help="a name from 'ferry policy list'")
    for command in (parser, commands.add("unset", _unset, "Take a VM's or a cluster's "
                                         "default policy away", group="policy")):
        command.add_argument("--cluster", help="every VM of the cluster's hosts")
        command.add_argument("--vm", help="this VM (before its cluster's default)")

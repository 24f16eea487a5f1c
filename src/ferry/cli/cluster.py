"""``ferry cluster ...``: named groups of hosts."""

from __future__ import annotations

import argparse

from ferry.cli import render
from ferry.cli.console import show
from ferry.cli.main import Commands, Context


def _create(args: argparse.Namespace, ctx: Context) -> int:
    cluster = ctx.client.create_cluster(args.name)
    print(f"cluster {cluster.name} created; add hosts with 'ferry cluster add-host "
          f"{cluster.name} HOST'")
    return 0


def _list(_args: argparse.Namespace, ctx: Context) -> int:
    clusters = ctx.client.list_clusters()
    show(render.table(("CLUSTER", "EVC MODE", "DEFAULT POLICY", "HOSTS"), [
        (c.name, c.evc.model if c.evc else "off", c.migration_policy or "-",
         ", ".join(c.hosts) or "-") for c in clusters]) if clusters else "no clusters")
    return 0


def _evc(args: argparse.Namespace, ctx: Context) -> int:
    if args.action == "enable":
        report = ctx.client.enable_evc(args.cluster, args.mode)
    elif args.action == "disable":
        report = ctx.client.disable_evc(args.cluster)
    else:
        report = ctx.client.evc_report(args.cluster)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        show(render.evc_report(report))
    return 0


def _delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.delete_cluster(args.name)
    print(f"cluster {args.name} deleted")
    return 0


def _add_host(args: argparse.Namespace, ctx: Context) -> int:
    cluster = ctx.client.add_cluster_host(args.cluster, args.host)
    print(f"cluster {cluster.name}: {', '.join(cluster.hosts)}")
    return 0


def _remove_host(args: argparse.Namespace, ctx: Context) -> int:
    cluster = ctx.client.remove_cluster_host(args.cluster, args.host)
    print(f"cluster {cluster.name}: {', '.join(cluster.hosts) or 'no hosts'}")
    return 0


def register(commands: Commands) -> None:
    commands.group("cluster", "Clusters: named groups of hosts")
    p = commands.add("create", _create, "Create an empty cluster", group="cluster")
    p.add_argument("name")
    commands.add("list", _list, "List clusters and their hosts", group="cluster")
    p = commands.add("delete", _delete, "Delete a cluster that has no hosts", group="cluster")
    p.add_argument("name")
    p = commands.add(
        "evc", _evc, "Enhanced VMotion Compatibility: one CPU for every VM of the cluster",
        group="cluster")
    p.add_argument("action", choices=["enable", "disable", "show"])
    p.add_argument("cluster")
    p.add_argument("--mode", default="auto",
                   help="enable: 'auto' (the baseline of the cluster's hosts, migratable "
                        "features only) or a CPU model libvirt knows, e.g. Westmere")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = commands.add("add-host", _add_host, "Put a host in a cluster (one cluster per host)",
                     group="cluster")
    p.add_argument("cluster")
    p.add_argument("host")
    p = commands.add("remove-host", _remove_host, "Take a host out of its cluster",
                     group="cluster")
    p.add_argument("cluster")
    p.add_argument("host")

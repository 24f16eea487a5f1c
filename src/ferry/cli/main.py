"""The ``ferry`` command: an argparse front end to the REST API.

Commands are registered on a :class:`Commands` object; handlers take the
parsed arguments and a :class:`Context` (which builds the API client lazily,
so commands that do not talk to the server, like ``serve``, never need a
token). Extra subcommands come from modules listed in ``EXTENSION_MODULES``
that exist and define ``register(commands: Commands) -> None``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from ferry.api.schemas import JobOut
from ferry.cli import console, render, render_jobs
from ferry.cli.client import ApiError, FerryClient
from ferry.errors import FerryError, MigrationCancelled, MigrationError
from ferry.job import JobState
from ferry.model import DISK_FORMATS


@dataclass
class Context:
    """What a handler may use: the API client, built on first use."""

    make_client: Callable[[], FerryClient] = FerryClient
    _client: FerryClient | None = field(default=None, repr=False)

    @property
    def client(self) -> FerryClient:
        if self._client is None:
            self._client = self.make_client()
        return self._client


Handler = Callable[[argparse.Namespace, Context], int]
Extension = Callable[["Commands"], None]

# How often `ferry migrate` polls its job; tests replace both.
POLL_INTERVAL = 0.5
sleep: Callable[[float], None] = time.sleep

# Optional modules (the lead's serve/lab/demo) that add subcommands; each one
# that exists must define register(commands: Commands) -> None.
EXTENSION_MODULES: tuple[str, ...] = (
    "ferry.cli.preflight", "ferry.cli.maintenance", "ferry.cli.cluster", "ferry.cli.serve",
    "ferry.cli.servers", "ferry.cli.accounts", "ferry.cli.policies",
    "ferry.cli.lab", "ferry.cli.demo", "ferry.cli.db")


class Commands:
    """The parser tree plus the handler of every leaf command."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(
            prog="ferry", description="Live migration of libvirt/QEMU VMs between hosts."
        )
        self.subparsers = self.parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True
        )
        self.handlers: dict[str, Handler] = {}
        self._groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}

    def add(
        self, name: str, handler: Handler, help: str, *, group: str | None = None
    ) -> argparse.ArgumentParser:
        """Register ``ferry NAME`` (or ``ferry GROUP NAME``); returns its parser for options."""
        subs = self.group(group) if group else self.subparsers
        parser = subs.add_parser(name, help=help, description=help)
        key = f"{group} {name}" if group else name
        parser.set_defaults(_command=key)
        self.handlers[key] = handler
        return parser

    def group(
        self, name: str, help: str = ""
    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        """A command with subcommands (``ferry host ...``), created on first use."""
        if name not in self._groups:
            parser = self.subparsers.add_parser(name, help=help, description=help)
            self._groups[name] = parser.add_subparsers(
                dest=f"{name}_command", metavar="SUBCOMMAND", required=True
            )
        return self._groups[name]


# A name is enough while one VM has it; two VMs of one name are told apart by UUID.
VM_HELP = "the VM's name, or its UUID (needed when two VMs share the name)"

def _out(shown: RenderableType) -> None:
    console.show(shown, sys.stdout)


def _err(text: str, style: str = "") -> None:
    console.show(Text(text, style=style), sys.stderr)


def _error(message: str) -> None:
    _err(f"ferry: error: {message}", render.ERROR)


def _job_exit_code(job: JobOut) -> int:
    if job.state is JobState.SUCCEEDED:
        return 0
    if job.state is JobState.CANCELLED:
        return MigrationCancelled.exit_code
    return MigrationError.exit_code


# ------------------------------------------------------------------- hosts
def cmd_host_add(args: argparse.Namespace, ctx: Context) -> int:
    host = ctx.client.add_host(args.name, args.uri, args.migration_address)
    _out(render.hosts_table([host]))
    return 0


def cmd_host_list(_args: argparse.Namespace, ctx: Context) -> int:
    hosts = ctx.client.list_hosts()
    _out(render.hosts_table(hosts) if hosts else "no hosts; add one with `ferry host add NAME URI`")
    return 0


def cmd_host_remove(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.remove_host(args.name)
    _out(f"removed host {args.name}")
    return 0


def cmd_refresh(args: argparse.Namespace, ctx: Context) -> int:
    inv = ctx.client.refresh(args.host)
    hosts = [h for h in inv.hosts.values() if args.host in (None, h.name)]
    _out(render.hosts_table(hosts))
    _out(f"\n{len(inv.vms)} VMs, {len(inv.pools)} pools, {len(inv.networks)} networks")
    return 0


# --------------------------------------------------------------------- VMs
def cmd_vm_list(_args: argparse.Namespace, ctx: Context) -> int:
    vms = ctx.client.list_vms()
    _out(render.vms_table(vms) if vms else "no VMs")
    return 0


def cmd_vm_show(args: argparse.Namespace, ctx: Context) -> int:
    _out(render.vm_detail(ctx.client.get_vm(args.name)))
    return 0


def parse_workload(text: str) -> dict[str, Any]:
    """``heartbeat,mem:256,disk`` -> the VMCreate workload fields (``none`` for nothing)."""
    spec: dict[str, Any] = {"heartbeat": False, "memory_workload_mib": 0, "disk_writer": False}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition(":")
        if name == "heartbeat" and not value:
            spec["heartbeat"] = True
        elif name == "disk" and not value:
            spec["disk_writer"] = True
        elif name == "mem" and value.isdigit():
            spec["memory_workload_mib"] = int(value)
        elif name != "none":
            raise argparse.ArgumentTypeError(
                f"unknown workload {item!r}: use heartbeat, mem:MIB, disk or none"
            )
    return spec


def cmd_vm_create(args: argparse.Namespace, ctx: Context) -> int:
    fields: dict[str, Any] = {
        "name": args.name,
        "host": args.host,
        "datastore": args.datastore,
        "memory_mib": args.memory,
        "vcpus": args.vcpus,
        "disk_mib": args.disk,
        "disk_format": args.disk_format,
        "network": args.network,
        "start": not args.no_start,
    }
    if args.workload is not None:
        fields.update(args.workload)
    vm = ctx.client.create_vm(**fields)
    _out(render.vm_detail(vm))
    return 0


def cmd_vm_start(args: argparse.Namespace, ctx: Context) -> int:
    vm = ctx.client.power(args.name, "on")
    _out(f"{vm.name}: {vm.state.value} on {vm.host}")
    return 0


def cmd_vm_stop(args: argparse.Namespace, ctx: Context) -> int:
    vm = ctx.client.power(args.name, "force-off" if args.force else "off")
    _out(f"{vm.name}: {vm.state.value} on {vm.host}")
    return 0


def cmd_vm_delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.delete_vm(args.name)
    _out(f"{args.name}: powered off, undefined, its disks deleted")
    return 0


def cmd_datastore_list(_args: argparse.Namespace, ctx: Context) -> int:
    datastores = ctx.client.list_datastores()
    _out(render.datastores_table(datastores) if datastores else "no datastores")
    return 0


def cmd_network_list(_args: argparse.Namespace, ctx: Context) -> int:
    networks = ctx.client.list_networks()
    _out(render.networks_table(networks) if networks else "no networks")
    return 0


# ------------------------------------------------------------------- jobs
def wait_for_job(ctx: Context, job: JobOut) -> JobOut:
    """Poll until the job finishes; the first Ctrl-C cancels it, the second stops waiting."""
    progress = console.LiveStatus(sys.stderr)
    cancel_sent = False
    try:
        while not job.state.finished:
            try:
                sleep(POLL_INTERVAL)
                job = ctx.client.get_job(job.id)
                if not job.state.finished:
                    progress.update(job.phase, partial(render_jobs.progress_view, job))
            except KeyboardInterrupt:
                progress.clear()
                if cancel_sent:
                    raise
                cancel_sent = True
                _err(f"ferry: cancelling job {job.id} (Ctrl-C again to stop waiting)")
                try:
                    job = ctx.client.cancel_job(job.id)
                except ApiError as exc:
                    _err(f"ferry: cancel failed: {exc.message}", render.ERROR)
    finally:
        progress.clear()  # whatever ends the wait, the terminal is left clean
    return job


def _dump_json(job: JobOut) -> str:
    return json.dumps(job.model_dump(mode="json"), indent=2, sort_keys=True)


def _finish(job: JobOut, as_json: bool) -> int:
    if as_json:
        print(_dump_json(job))  # machine output: exactly the JSON, never through Rich
    else:
        _out(render_jobs.job_report(job))
    code = _job_exit_code(job)
    if code and job.error:
        _error(job.error)
    return code


def cmd_migrate(args: argparse.Namespace, ctx: Context) -> int:
    job = ctx.client.migrate(args.vm, args.host, args.datastore, args.format,
                             args.disk.split(",") if args.disk else None, cold=args.cold,
                             policy=args.policy, bandwidth_mibps=args.bandwidth)
    if args.no_wait:
        print(_dump_json(job) if args.json else f"queued job {job.id}: `ferry job show {job.id}`")
        return 0
    where = " ".join(part for part in (
        job.dest_host if job.dest_host != job.source_host else "",
        f"datastore {args.datastore}" if args.datastore else "") if part)
    _err(f"migrating {job.vm} {job.source_host} -> {where} (job {job.id})")
    for event in job.events:
        for warning in event.data.get("warnings") or ():
            _err(f"  [WARNING] {warning.get('code')}  {warning.get('message')}", render.WARNING)
    try:
        job = wait_for_job(ctx, job)
    except KeyboardInterrupt:
        _err(f"ferry: stopped waiting; the job continues: `ferry job show {job.id}`")
        return 130
    return _finish(job, args.json)


def cmd_jobs(args: argparse.Namespace, ctx: Context) -> int:
    jobs = ctx.client.list_jobs(limit=10000 if args.all else 20)
    _out(render.jobs_table(jobs) if jobs else "no jobs")
    return 0


def cmd_job_show(args: argparse.Namespace, ctx: Context) -> int:
    job = ctx.client.get_job(args.id)
    if not job.state.finished:
        if args.json:
            print(_dump_json(job))
        else:
            now = Text(f"  now: {render_jobs.progress_line(job)}")
            _out(Group(render_jobs.job_report(job), now))
        return 0
    return _finish(job, args.json)


def cmd_job_cancel(args: argparse.Namespace, ctx: Context) -> int:
    job = ctx.client.cancel_job(args.id)
    _out(f"job {job.id}: {job.state.value}")
    return 0


# ------------------------------------------------------------------ parser
def _register_builtin(c: Commands) -> None:
    c.group("host", "Register and list hypervisor hosts")
    p = c.add("add", cmd_host_add, "Register a libvirt host", group="host")
    p.add_argument("name")
    p.add_argument("uri", help="libvirt URI, e.g. qemu+tls://kvm1/system")
    p.add_argument("--migration-address", help="address the migration stream should use")
    c.add("list", cmd_host_list, "List hosts", group="host")
    p = c.add("remove", cmd_host_remove, "Forget a host", group="host")
    p.add_argument("name")

    p = c.add("refresh", cmd_refresh, "Rediscover hosts, VMs, datastores and networks")
    p.add_argument("--host", help="only this host")

    c.group("vm", "Inspect, create and power VMs")
    c.add("list", cmd_vm_list, "List VMs", group="vm")
    p = c.add("show", cmd_vm_show, "Show one VM", group="vm")
    p.add_argument("name", help=VM_HELP)
    p = c.add("create", cmd_vm_create, "Create a lab VM from the lab guest image", group="vm")
    p.add_argument("name")
    p.add_argument("--host", required=True)
    p.add_argument("--datastore", required=True)
    p.add_argument("--memory", type=int, default=512, metavar="MIB")
    p.add_argument("--vcpus", type=int, default=1, metavar="N")
    p.add_argument("--disk", type=int, default=256, metavar="MIB", help="data disk, 0 for none")
    p.add_argument("--disk-format", choices=("qcow2", "raw"), default="qcow2")
    p.add_argument("--workload", type=parse_workload, metavar="LIST",
                   help="comma list of heartbeat, mem:MIB, disk (default: heartbeat)")
    p.add_argument("--network", default="Production")
    p.add_argument("--no-start", action="store_true", help="define but do not start")
    p = c.add("start", cmd_vm_start, "Power a VM on", group="vm")
    p.add_argument("name", help=VM_HELP)
    p = c.add("stop", cmd_vm_stop, "Shut a VM down", group="vm")
    p.add_argument("name", help=VM_HELP)
    p.add_argument("--force", action="store_true", help="power off instead of shutting down")
    p = c.add("delete", cmd_vm_delete, "Power off and remove a VM and its disks", group="vm")
    p.add_argument("name", help=VM_HELP)

    c.group("datastore", "Storage seen by hosts")
    c.add("list", cmd_datastore_list, "List datastores", group="datastore")
    c.group("network", "Virtual networks on hosts")
    c.add("list", cmd_network_list, "List networks", group="network")

    p = c.add("migrate", cmd_migrate,
              "Move a running VM to another host, its disks to another datastore, or both")
    p.add_argument("vm", help=VM_HELP)
    p.add_argument("--host", metavar="DEST", help="destination host (VMotion)")
    p.add_argument("--datastore", help="destination datastore: on the VM's host (Storage "
                   "VMotion), or with --host on that host (memory and disks together)")
    p.add_argument("--format", default="same", choices=list(DISK_FORMATS),
                   help="disk format on the new datastore")
    p.add_argument("--disk", help="comma list of disks to move (default: every data disk)")
    p.add_argument("--cold", action="store_true",
                   help="the VM is powered off: copy its files and move its registration")
    p.add_argument("--policy", metavar="NAME",
                   help="convergence policy of a live move between hosts ('ferry policy list')")
    p.add_argument("--bandwidth", metavar="MIBPS", type=int,
                   help="MiB/s a live move between hosts may use on the migration network "
                        "(the hosts' own limits apply as well: the lowest wins)")
    p.add_argument("--no-wait", action="store_true", help="print the job and return")
    p.add_argument("--json", action="store_true", help="print the final job as JSON")

    p = c.add("jobs", cmd_jobs, "List recent jobs")
    p.add_argument("--all", action="store_true", help="every job, not only the last 20")
    c.group("job", "Inspect or cancel a job")
    p = c.add("show", cmd_job_show, "Show a job and its report", group="job")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p = c.add("cancel", cmd_job_cancel, "Cancel a running job", group="job")
    p.add_argument("id")


def discover_extensions(modules: Sequence[str] = EXTENSION_MODULES) -> list[Extension]:
    found: list[Extension] = []
    for name in modules:
        if importlib.util.find_spec(name) is None:
            continue
        # Import errors in an existing module must surface, not hide a command.
        register: Extension = importlib.import_module(name).register
        found.append(register)
    return found


def build_parser(extensions: Iterable[Extension] | None = None) -> Commands:
    """Every command: the built-in ones, then each extension's."""
    commands = Commands()
    _register_builtin(commands)
    for register in discover_extensions() if extensions is None else extensions:
        register(commands)
    return commands


def main(
    argv: list[str] | None = None,
    *,
    client: FerryClient | Callable[[], FerryClient] | None = None,
    extensions: Iterable[Extension] | None = None,
) -> int:
    """Entry point; ``client`` (or a factory of one) replaces the default for tests."""
    commands = build_parser(extensions)
    try:
        args = commands.parser.parse_args(argv)
    except SystemExit as exc:  # --help and usage errors: return instead of exiting
        return exc.code if isinstance(exc.code, int) else 2
    if isinstance(client, FerryClient):
        given = client
        ctx = Context(make_client=lambda: given)
    else:
        ctx = Context(make_client=client or FerryClient)
    try:
        return commands.handlers[args._command](args, ctx)
    except ApiError as exc:
        _error(exc.message)
        for finding in exc.findings:
            console.show(render_jobs.finding_line(finding), sys.stderr)
        return exc.exit_code
    except FerryError as exc:  # from a command that runs here: serve's settings, the lab
        _error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        _err("ferry: interrupted")
        return 130
    finally:
        if ctx._client is not None and not isinstance(client, FerryClient):
            ctx._client.close()


if __name__ == "__main__":
    sys.exit(main())

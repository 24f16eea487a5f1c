"""``ferry demo``: from a bare machine to a VM live-migrated across three hosts.

It builds the lab, starts a ferry server in this process, registers the lab's
hosts over TLS, creates a VM with heartbeat and memory workloads on the shared
datastore, and moves it host1 -> host2 -> host3, then its disk to host3's own
datastore, then memory and disk together back to host1's own datastore, with
the same ``ferry`` commands an admin types, and prints a summary of every move.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from itertools import pairwise

from ferry import config
from ferry.cli.client import ApiError, FerryClient
from ferry.cli.console import show
from ferry.cli.main import Commands, Context
from ferry.cli.main import main as cli
from ferry.cli.render import human_bytes, table
from ferry.lab import layout
from ferry.lab.collector import HeartbeatCollector
from ferry.lab.layout import LabHostLayout
from ferry.reports import LiveReport, StorageReport

DEMO_VM = "demo-vm"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((config.DEFAULT_LISTEN, 0))
        return int(sock.getsockname()[1])


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _run(*argv: str) -> None:
    print(f"$ ferry {' '.join(argv)}", flush=True)
    code = cli(list(argv))
    if code != 0:
        raise SystemExit(code)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _demo(args: argparse.Namespace, ctx: Context) -> int:
    from ferry.lab.lab import lab_up
    from ferry.server import build_server

    hosts = [f"host{i}" for i in range(1, args.hosts + 1)]
    _step(f"lab: {args.hosts} libvirt hosts on this machine")
    started = time.monotonic()
    state = lab_up(hosts=args.hosts, link=args.link)
    print(f"lab up in {time.monotonic() - started:.1f} s; guests run with "
          f"{'KVM' if state.accel == 'kvm' else 'TCG (no usable KVM here)'}")

    _step("control plane: ferry server with its REST API, in this process")
    port = _free_port()
    os.environ["FERRY_URL"] = f"http://{config.DEFAULT_LISTEN}:{port}"
    server = build_server(config.ServerSettings(listen=config.DEFAULT_LISTEN, port=port,
                                                database_url=config.database_url()))
    server.start_in_background()
    print(f"serving on {os.environ['FERRY_URL']} (database {config.database_url()})")
    try:
        client = FerryClient()
        known = {h.name for h in client.list_hosts()}
        for host in state.hosts:
            if host.name not in known:
                _run("host", "add", host.name, host.uri)
            # What an admin declares and ferry cannot discover: the NIC that carries
            # migrations (its speed and MTU are then checked) and that the lab's
            # migration bridge carries nothing else.
            _run("host", "set", host.name, "--migration-interface",
                 LabHostLayout(host.index).mig_veth_host, "--isolated", "on")
        _run("host", "list")
        _run("datastore", "list")
        _run("network", "list")

        _step(f"a VM on {hosts[0]}, on the shared datastore, with heartbeat and "
              f"{args.workload_mib} MiB of memory being rewritten")
        try:
            client.get_vm(DEMO_VM)
            _run("vm", "delete", DEMO_VM)
        except ApiError:
            pass  # no VM from an earlier run
        _run("vm", "create", DEMO_VM, "--host", hosts[0], "--datastore", layout.SHARED_POOL,
             "--memory", str(args.memory), "--disk", "64",
             "--workload", f"heartbeat,mem:{args.workload_mib}")
        if server.collector is None or not server.collector.wait_for_heartbeat(DEMO_VM, 60):
            print("ferry: demo: the VM sent no heartbeat within 60 s")
            return 1
        if not _steady(server.collector, DEMO_VM):
            print("ferry: demo: the VM's heartbeat did not settle within 60 s")
            return 1
        print(f"{DEMO_VM} booted; its heartbeat arrives every 10 ms, steadily")

        hops: list[tuple[str, str]] = []
        for source, dest in pairwise(hosts):
            _step(f"live migration of {DEMO_VM} to {dest}")
            _run("migrate", DEMO_VM, "--host", dest)
            hops.append((f"{source} -> {dest}", client.list_jobs(limit=1)[0].id))
        last, local = hosts[-1], layout.LOCAL_POOL
        _step(f"storage migration: {DEMO_VM}'s disk to {last}'s own datastore, thin, "
              "while it runs")
        _run("migrate", DEMO_VM, "--datastore", local, "--format", "thin")
        hops.append((f"{last} disk -> {local}", client.list_jobs(limit=1)[0].id))
        _step(f"host and storage at once: back to {hosts[0]}'s own datastore, no storage "
              "shared on the way")
        _run("migrate", DEMO_VM, "--host", hosts[0], "--datastore", local)
        hops.append((f"{last} -> {hosts[0]}+{local}", client.list_jobs(limit=1)[0].id))
        _run("vm", "list")
        _summary(client, hops)
    finally:
        server.stop()
    print("\nThe lab stays up: 'ferry lab status' shows it, 'ferry lab down' removes it.")
    return 0


def _steady(collector: HeartbeatCollector, vm: str, window: float = 3.0,
            timeout: float = 60.0) -> bool:
    """Wait until the guest's workloads are up: no heartbeat gap over 100 ms for ``window`` s.

    Right after boot the memory writer first fills its buffer, which can hold
    the heartbeat back for seconds; a migration started then would be blamed
    for the guest's own start-up.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(window)
        now = time.monotonic()
        gap = collector.largest_gap(vm, now - window, now)
        if gap is not None and gap.gap_ms < 100:
            return True
    return False


def _summary(client: FerryClient, hops: list[tuple[str, str]]) -> None:
    _step("summary")
    rows = []
    for label, job_id in hops:
        job = client.get_job(job_id)
        r = job.report
        # A disk move on one host (StorageReport) sends no memory and never pauses the VM.
        live = r if isinstance(r, LiveReport) else LiveReport()
        total = r.total_ms if r is not None else None
        gap, lost = ((r.heartbeat_gap_ms, r.heartbeat_lost)
                     if isinstance(r, LiveReport | StorageReport) else (None, None))
        sent = human_bytes(live.data_bytes) if live.data_bytes is not None else "-"
        rows.append((label, _ms(total), _ms(live.downtime_ms), _ms(gap), _or_dash(lost), sent,
                     _or_dash(live.iterations)))
    figures = ("TOTAL", "DOWNTIME", "HB GAP", "HB LOST", "SENT", "ITER")
    show(table(("MOVE", *figures), rows, right=figures))
    print("DOWNTIME is QEMU's own figure; HB GAP is the longest silence of the VM's heartbeat "
          "as seen from the network; a disk move on one host sends no memory and never pauses "
          "the VM.")


def register(commands: Commands) -> None:
    parser = commands.add("demo", _demo, "Build the lab and live-migrate a VM across it")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--link", help="shape the migration links, e.g. 1gbit")
    parser.add_argument("--memory", type=int, default=1024, help="VM memory in MiB")
    parser.add_argument("--workload-mib", type=int, default=256,
                        help="MiB of guest memory rewritten continuously")

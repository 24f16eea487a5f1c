"""ferry's live migration next to plain ``virsh migrate --live --p2p``, and the floor.

One run, one VM, one workload, the same lab links: per round the VM goes
host1 -> host2 with ferry under each policy asked (``--policies``) and comes
back with virsh (libvirt's defaults), ROUNDS times per link setting. Downtime
is reported twice: QEMU's own figure (libvirt's completed job stats) and the
longest silence of the guest's 10 ms heartbeat as the lab's collector saw it.
A virsh migration that has not finished after --limit seconds is aborted and
reported as not converged. After every move the guest checks its memory
writer's pages (the lab agent's memory check): "clean" or what it found.

The floor, per link: the VM is paused and moved once with virsh (``--tls``, as
ferry's streams are), so every page crosses exactly once; the floor is the
bytes of non-zero memory that move sent ("Normal data") divided by the rate
QEMU measured on that link ("Memory bandwidth"), the mean of one move each way.

    .venv/bin/python bench/migration_vs_virsh.py [--links none,1gbit,10gbit]
        [--policies auto,default] [--rounds 1] [--memory 1024] [--workload-mib 256]
        [--limit 180] [--virsh-tls] [--virsh-parallel N] [--virsh-xbzrle] [--json out.json]

Needs root; brings the lab up (3 hosts) if it is not.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from typing import Any

from benchlib import ferry_on_lab, fresh_busy_vm, median_of, wait_job

from ferry.cli.client import ApiError, FerryClient
from ferry.errors import LabError
from ferry.lab.collector import HeartbeatCollector
from ferry.lab.lab import LabState, client_uri, set_link
from ferry.reports import LiveReport

VM = "bench-vm"




def ferry_round(client: FerryClient, collector: HeartbeatCollector, dest: str,
                policy: str) -> dict[str, Any]:
    job = wait_job(client, client.migrate(VM, dest, policy=policy).id)
    r = job.report if isinstance(job.report, LiveReport) else LiveReport()
    return {
        "tool": f"ferry {policy}", "ok": job.state.value == "succeeded", "error": job.error,
        "total_s": (r.total_ms or 0) / 1000, "downtime_ms": r.downtime_ms,
        "hb_gap_ms": r.heartbeat_gap_ms, "hb_lost": r.heartbeat_lost,
        "data_mib": (r.data_bytes or 0) / 2**20, "iterations": r.iterations,
        "actions": list(r.policy_actions),
    }


def memory_check(client: FerryClient, collector: HeartbeatCollector, writer_mib: int) -> str:
    """The guest's own check of its memory writer's pages, after a move."""
    if writer_mib == 0:
        return "no writer"
    client.refresh()
    address = client.get_vm(VM).lab_address
    if not address:
        return "no address"
    try:
        check = collector.request_memory_check(VM, address, timeout=90)
    except LabError as err:
        return f"no answer ({err.message})"
    if check.ok:
        return "clean"
    return f"{check.stale} stale, {check.torn} torn, {check.misplaced} misplaced"


def floor_s(lab: LabState) -> dict[str, float]:
    """One paused move each way with virsh: non-zero memory once, at the link's rate."""
    samples = []
    for src, dest in (("host1", "host2"), ("host2", "host1")):
        src_uri = client_uri(lab.host(src).uri)
        subprocess.run(["virsh", "-c", src_uri, "suspend", VM], check=True, capture_output=True)
        peer = f"qemu+tls://{lab.host(dest).migration_address}/system"
        subprocess.run(["virsh", "-c", src_uri, "migrate", "--live", "--p2p", "--persistent",
                        "--undefinesource", "--tls", VM, peer], check=True, capture_output=True)
        dest_uri = client_uri(lab.host(dest).uri)
        info = _jobinfo(dest_uri)
        subprocess.run(["virsh", "-c", dest_uri, "resume", VM], check=True, capture_output=True)
        normal = _bytes(info.get("Normal data", ""))
        rate = _bytes(info.get("Memory bandwidth", "").replace("/s", ""))
        if not normal or not rate:
            raise SystemExit(f"no figures for the floor in virsh domjobinfo: {info}")
        samples.append((normal, rate))
    normal = sum(n for n, _ in samples) / len(samples)
    rate = sum(r for _, r in samples) / len(samples)
    return {"floor_s": normal / rate, "nonzero_mib": normal / 2**20, "link_mibps": rate / 2**20}


def _bytes(text: str) -> float | None:
    """'123.456 MiB' (as virsh prints) in bytes."""
    match = re.match(r"([0-9.]+)\s*(B|KiB|MiB|GiB)", text.strip())
    if not match:
        return None
    return float(match.group(1)) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[
        match.group(2)]


def _jobinfo(uri: str) -> dict[str, str]:
    out = subprocess.run(["virsh", "-c", uri, "domjobinfo", "--completed", VM],
                         capture_output=True, text=True).stdout
    info = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def virsh_round(lab: LabState, collector: HeartbeatCollector, src: str, dest: str,
                limit: float, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``virsh migrate`` of the benchmark VM, plus ``extra`` options (e.g. ``--tls``)."""
    src_uri = client_uri(lab.host(src).uri)
    dest_uri = client_uri(lab.host(dest).uri)
    peer = f"qemu+tls://{lab.host(dest).migration_address}/system"
    started_mono = time.monotonic()
    proc = subprocess.Popen(
        ["virsh", "-c", src_uri, "migrate", "--live", "--p2p", "--persistent",
         "--undefinesource", *extra, VM, peer], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _, err = proc.communicate(timeout=limit)
        converged = proc.returncode == 0
    except subprocess.TimeoutExpired:
        subprocess.run(["virsh", "-c", src_uri, "domjobabort", VM], capture_output=True)
        _, err = proc.communicate()
        converged = False
        err = f"not converged in {limit:.0f} s (aborted)"
    ended_mono = time.monotonic()
    gap = collector.largest_gap(VM, started_mono, ended_mono)
    info = _jobinfo(dest_uri) if converged else {}

    def number(key: str) -> float | None:
        match = re.match(r"([0-9.]+)", info.get(key, ""))
        return float(match.group(1)) if match else None

    data = number("Data processed")
    unit = info.get("Data processed", "").split()[-1:] or ["MiB"]
    scale = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "B": 1 / 2**20}.get(unit[0], 1)
    return {
        "tool": "virsh", "ok": converged, "error": None if converged else err.strip(),
        "total_s": ended_mono - started_mono,
        "downtime_ms": number("Total downtime"),
        "hb_gap_ms": round(gap.gap_ms, 1) if gap and converged else None,
        "hb_lost": gap.lost if gap and converged else None,
        "data_mib": data * scale if data is not None else None,
        "iterations": number("Iteration"),
    }


def where(lab: LabState) -> str:
    for host in lab.hosts:
        names = subprocess.run(["virsh", "-q", "-c", client_uri(host.uri), "list", "--name"],
                               capture_output=True, text=True).stdout.split()
        if VM in names:
            return host.name
    raise SystemExit(f"{VM} runs nowhere")


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", default="none,1gbit,10gbit")
    parser.add_argument("--policies", default="auto,default",
                        help="ferry's policies to run, each a move per round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--workload-mib", type=int, default=256)
    parser.add_argument("--limit", type=float, default=180.0)
    parser.add_argument("--virsh-tls", action="store_true",
                        help="also move with virsh --tls: libvirt's defaults, encrypted as "
                        "ferry's streams are")
    parser.add_argument("--virsh-parallel", type=int, default=0, metavar="N",
                        help="also move with virsh --tls over N parallel connections (multifd)")
    parser.add_argument("--virsh-xbzrle", action="store_true",
                        help="also move with virsh --tls and xbzrle compression")
    parser.add_argument("--json")
    args = parser.parse_args()
    policies = args.policies.split(",")
    virsh_runs: list[tuple[str, tuple[str, ...]]] = [("virsh", ())]
    if args.virsh_tls:
        virsh_runs.append(("virsh --tls", ("--tls",)))
    if args.virsh_parallel:
        virsh_runs.append((f"virsh --tls multifd {args.virsh_parallel}", (
            "--tls", "--parallel", "--parallel-connections", str(args.virsh_parallel))))
    if args.virsh_xbzrle:
        virsh_runs.append(("virsh --tls xbzrle", ("--tls", "--compressed", "--comp-methods",
                                                  "xbzrle")))

    lab, server, client = ferry_on_lab()
    assert server.collector is not None
    collector = server.collector

    def check(row: dict[str, Any]) -> str:
        return memory_check(client, collector, args.workload_mib) if row["ok"] else "-"

    rows: list[dict[str, Any]] = []
    floors: dict[str, dict[str, float]] = {}
    try:
        fresh_busy_vm(client, collector, VM, args.memory, args.workload_mib)
        for link in args.links.split(","):
            rate = None if link == "none" else link
            for host in lab.hosts:
                set_link(host.name, rate)
            client.refresh()
            floors[link] = floor_s(lab)
            print(json.dumps({"link": link, **floors[link]}), flush=True)
            client.refresh()
            for n in range(args.rounds):
                for policy in policies:
                    if where(lab) != "host1":
                        raise SystemExit("the VM is not on host1 at the start of a move")
                    row = ferry_round(client, collector, "host2", policy)
                    row["memory"] = check(row)
                    rows.append({"link": link, "round": n + 1, **row})
                    print(json.dumps(rows[-1]), flush=True)
                    client.refresh()
                    if where(lab) == "host2":
                        wait_job(client, client.migrate(VM, "host1", policy="auto").id)
                        client.refresh()
                for tool, extra in virsh_runs:
                    if where(lab) != "host1":
                        raise SystemExit("the VM is not on host1 before virsh's move")
                    row = virsh_round(lab, collector, "host1", "host2", args.limit, extra)
                    row["tool"] = tool
                    client.refresh()
                    row["memory"] = check(row)
                    rows.append({"link": link, "round": n + 1, **row})
                    print(json.dumps(rows[-1]), flush=True)
                    if where(lab) == "host2":
                        wait_job(client, client.migrate(VM, "host1", policy="auto").id)
                        client.refresh()
    finally:
        for host in lab.hosts:
            set_link(host.name, None)
        try:
            client.delete_vm(VM)
        except ApiError:
            pass
        server.stop()

    print(f"\nVM {args.memory} MiB, {args.workload_mib} MiB rewritten continuously, "
          f"TCG guest, {args.rounds} round(s) per link; medians")
    print(f"{'link':7} {'move':24} {'ok':>5} {'total s':>8} {'floor s':>8} {'x floor':>8} "
          f"{'downtime ms':>12} {'hb gap ms':>10} {'sent MiB':>9} {'iter':>5}  memory")
    for link in args.links.split(","):
        floor = floors.get(link, {}).get("floor_s")
        for tool in [f"ferry {p}" for p in policies] + [t for t, _ in virsh_runs]:
            mine = [r for r in rows if r["link"] == link and r["tool"] == tool]
            ok = [r for r in mine if r["ok"]]

            def med(key: str, rs: list[dict[str, Any]] = ok) -> float | None:
                return median_of(rs, key)

            total = med("total_s")
            ratio = total / floor if total is not None and floor else None
            checks = ", ".join(sorted({str(r.get("memory")) for r in ok})) or "-"
            print(f"{link:7} {tool:24} {len(ok)}/{len(mine):<3} {fmt(total, '8.1f')} "
                  f"{fmt(floor, '8.1f')} {fmt(ratio, '8.2f')} "
                  f"{fmt(med('downtime_ms'), '12.0f')} {fmt(med('hb_gap_ms'), '10.0f')} "
                  f"{fmt(med('data_mib'), '9.0f')} {fmt(med('iterations'), '5.0f')}  {checks}")
    for link, floor_row in floors.items():
        print(f"floor {link}: {floor_row['nonzero_mib']:.0f} MiB non-zero at "
              f"{floor_row['link_mibps']:.0f} MiB/s = {floor_row['floor_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"floors": floors, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

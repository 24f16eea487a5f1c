"""Text output for the CLI: aligned tables, human sizes, progress lines, job reports.

Everything here is a pure function returning strings, so the formatting is
testable without a terminal or a server.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ferry.api.schemas import (
    CheckOut,
    DatastoreOut,
    EvcReportOut,
    FindingOut,
    HostOut,
    JobOut,
    NetworkOut,
    VMOut,
)

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float | None) -> str:
    """1024-based, two or three significant digits: ``612 MiB``, ``1.0 GiB``."""
    if n is None:
        return "-"
    value = float(n)
    unit = 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(value)} B"
    return f"{value:.1f} {_UNITS[unit]}" if abs(value) < 10 else f"{value:.0f} {_UNITS[unit]}"


def human_mib(mib: int | None) -> str:
    return "-" if mib is None else human_bytes(mib * 1024 * 1024)


def human_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [
        ["-" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def hosts_table(hosts: Sequence[HostOut]) -> str:
    rows = []
    for h in hosts:
        if h.maintenance:
            state = "maintenance"
        elif h.connected:
            state = "connected"
        else:
            state = "disconnected"
        memory = f"{human_mib(h.free_memory_mib)} free of {human_mib(h.memory_mib)}"
        rows.append(
            (h.name, h.cluster or "-", state, h.cpus or "-", memory, h.libvirt_version,
             h.migration_address, h.error or h.uri)
        )
    return table(("NAME", "CLUSTER", "STATE", "CPUS", "MEMORY", "LIBVIRT", "MIGRATION ADDR",
                  "URI / ERROR"), rows)


def moving(vm: VMOut) -> str | None:
    """'moving to host3 (job 1a2b…)', or None for a VM that is not in a move."""
    hold = vm.moving
    if hold is None:
        return "incoming copy of a migration" if vm.migration == "incoming" else None
    where = f" to {hold.dest_host}" if hold.dest_host else ""
    if hold.job_id is None:
        return f"migrating{where} (not started by ferry)"
    return f"moving{where} (job {hold.job_id}, {hold.kind}, {hold.state})"


def vms_table(vms: Sequence[VMOut]) -> str:
    shared_name = len({vm.name for vm in vms}) < len(vms)  # then show who is who: the UUID
    rows: list[tuple[object, ...]] = [
        (vm.name, vm.host, *((vm.uuid,) if shared_name else ()),
         _vm_state(vm) + (f", {moving(vm)}" if moving(vm) else ""),
         vm.vcpus, human_mib(vm.memory_mib), len(vm.disks), vm.lab_address)
        for vm in vms
    ]
    return table(("NAME", "HOST", *(("UUID",) if shared_name else ()), "STATE", "VCPUS",
                  "MEMORY", "DISKS", "ADDRESS"), rows)


def _vm_state(vm: VMOut) -> str:
    # A host that does not answer: its VMs as it last showed them, said to be so.
    return vm.state.value if vm.current else f"{vm.state.value} (not current)"


def vm_detail(vm: VMOut) -> str:
    cpu = vm.cpu_mode or "-"
    if vm.cpu_model:
        cpu += f" ({vm.cpu_model})"
    fields: list[tuple[str, object]] = [
        ("Name", vm.name),
        ("UUID", vm.uuid),
        ("Host", vm.host),
        ("State", _vm_state(vm)),
        *([("Move", moving(vm))] if moving(vm) else []),
        ("Memory", human_mib(vm.memory_mib)),
        ("vCPUs", vm.vcpus),
        ("CPU mode", cpu),
        ("Domain type", vm.domain_type),
        ("Persistent", _yes(vm.persistent)),
        ("Snapshots", vm.snapshot_count),
        ("Address", vm.lab_address or "-"),
    ]
    if vm.affinity.pinned:
        pins = ", ".join(vm.affinity.vcpupin) or vm.affinity.vcpu_cpuset or "-"
        fields.append(("CPU affinity", pins))
    if vm.kernel:
        fields.append(("Kernel", vm.kernel))
    width = max(len(k) for k, _ in fields)
    out = [f"{k.ljust(width)}  {v}" for k, v in fields]
    if vm.disks:
        out += ["", "Disks:"]
        disk_rows = [
            (d.target, d.device, d.driver_format, d.source_type, d.source or "(empty)")
            for d in vm.disks
        ]
        out += _indent(table(("TARGET", "DEVICE", "FORMAT", "TYPE", "SOURCE"), disk_rows))
    if vm.interfaces:
        out += ["", "Interfaces:"]
        nic_rows = [(i.mac, i.kind, i.network, i.portgroup, i.model) for i in vm.interfaces]
        out += _indent(table(("MAC", "KIND", "NETWORK", "PORTGROUP", "MODEL"), nic_rows))
    return "\n".join(out)


def _indent(text: str, prefix: str = "  ") -> list[str]:
    return [prefix + line for line in text.splitlines()]


def datastores_table(datastores: Sequence[DatastoreOut]) -> str:
    rows = []
    for ds in datastores:
        first = ds.pools[0] if ds.pools else None
        rows.append((
            ds.name,
            _yes(ds.shared),
            ",".join(ds.hosts),
            first.pool_type if first else "-",
            human_bytes(first.capacity) if first else "-",
            human_bytes(first.available) if first else "-",
            first.path if first else "-",
        ))
    return table(("NAME", "SHARED", "HOSTS", "TYPE", "CAPACITY", "FREE", "PATH"), rows)


def networks_table(networks: Sequence[NetworkOut]) -> str:
    rows = [
        (n.name, n.host, n.bridge, n.forward_mode or "none (internal)", _yes(n.active),
         ",".join(n.portgroups) or "-")
        for n in networks
    ]
    return table(("NAME", "HOST", "BRIDGE", "FORWARD", "ACTIVE", "PORTGROUPS"), rows)


def _clock(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def job_duration(job: JobOut, now: float | None = None) -> str:
    if job.started_at is None:
        return "-"
    end = job.finished_at if job.finished_at is not None else (now or time.time())
    return human_ms((end - job.started_at) * 1000)


def jobs_table(jobs: Sequence[JobOut]) -> str:
    rows = [
        (j.id, j.kind, j.vm, f"{j.source_host} -> {j.dest_host or '-'}", j.state.value, j.phase,
         _clock(j.created_at), job_duration(j))
        for j in jobs
    ]
    return table(("ID", "KIND", "VM", "HOSTS", "STATE", "PHASE", "CREATED", "DURATION"), rows)


def evc_report(report: EvcReportOut) -> str:
    """A cluster's EVC mode and, per host, what the mode hides from its VMs."""
    mode = report.mode
    if mode is None:
        return f"cluster {report.cluster}: EVC is off"
    asked = "" if mode.requested == mode.model else f", asked as '{mode.requested}'"
    lines = [f"cluster {report.cluster}: EVC mode {mode.model} ({mode.vendor or 'any vendor'}"
             f"{asked}), {len(mode.features)} CPU features given to every VM it starts"]
    if not report.hosts:
        lines.append("  no hosts yet")
    for host in report.hosts:
        if host.error:
            lines.append(f"  {host.host}: not asked ({host.error})")
            continue
        lines.append(f"  {host.host}: host CPU {host.model} ({host.vendor or 'vendor unknown'}); "
                     f"the mode hides {len(host.hidden)} feature(s) from its VMs")
        if host.hidden:
            lines.extend(_indent(textwrap.fill(", ".join(host.hidden), 90), "      "))
        if host.missing:
            lines.append(f"    cannot run the mode: lacks {', '.join(host.missing)}")
    if report.not_at_mode:
        lines.append(f"  running with another CPU until ferry starts them again: "
                     f"{', '.join(report.not_at_mode)}")
    lines += [f"  warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def finding_line(f: FindingOut) -> str:
    line = f"  [{f.status.upper()}] {f.code}  {f.message}"
    return f"{line} — {f.remedy}" if f.remedy else line


def _num(progress: dict[str, Any], key: str) -> float | None:
    value = progress.get(key)
    return float(value) if isinstance(value, int | float) else None


def progress_line(job: JobOut, width: int = 20) -> str:
    """``precopy  [#####.....]  612 MiB/1.0 GiB  remaining 412 MiB  iter 3 ...``."""
    p = job.progress
    phase = str(p.get("phase") or job.phase or job.state.value)
    parts = [phase]
    disks = p.get("disks")
    if isinstance(disks, dict) and disks:
        # A storage move: one figure per disk, and the copy's mode.
        for target, d in sorted(disks.items()):
            if isinstance(d, dict):
                rate = _num(d, "rate_bps")
                mode = f", {d.get('mode')}" if d.get("mode") else ""
                parts.append(f"{target} {human_bytes(d.get('copied'))}/"
                             f"{human_bytes(d.get('total'))}"
                             + (f" at {human_bytes(rate)}/s" if rate is not None else "")
                             + f" (left {human_bytes(d.get('remaining'))}{mode})")
        return "  ".join(parts)
    vms = p.get("vms")
    if isinstance(vms, dict):
        # An evacuation: how its moves stand.
        states = [str(v.get("state")) for v in vms.values() if isinstance(v, dict)]
        moved = sum(s == "succeeded" for s in states)
        parts.append(f"{moved}/{len(states)} moved, {states.count('running')} moving, "
                     f"{states.count('queued')} queued, {len(p.get('not_moved') or {})} stuck")
        return "  ".join(parts)
    disk_total = _num(p, "disk_total")
    if disk_total:
        # Shared-nothing: QEMU copies the disks first, then the memory.
        parts.append(f"disks {human_bytes(_num(p, 'disk_processed'))}/"
                     f"{human_bytes(disk_total)}")
    total = _num(p, "memory_total")
    done = _num(p, "memory_processed")
    if total and done is not None:
        filled = min(width, int(width * done / total))
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}]")
        parts.append(f"{human_bytes(done)}/{human_bytes(total)}")
    remaining = _num(p, "memory_remaining")
    if remaining is not None:
        parts.append(f"remaining {human_bytes(remaining)}")
    iteration = _num(p, "iteration")
    if iteration is not None:
        parts.append(f"iter {int(iteration)}")
    dirty = _num(p, "dirty_rate_bps")
    if dirty is not None:
        parts.append(f"dirty {human_bytes(dirty)}/s")
    bw = _num(p, "memory_bps")
    if bw is not None:
        parts.append(f"bw {human_bytes(bw)}/s")
    elapsed = _num(p, "elapsed_ms")
    if elapsed is not None:
        parts.append(human_ms(elapsed))
    return "  ".join(parts)


def job_report(job: JobOut) -> str:
    """The end-of-migration summary: outcome, timings, data, policy actions, phases."""
    r = job.report
    out = [
        f"Job {job.id}: {job.kind} {job.vm} {job.source_host} -> {job.dest_host or '-'}: "
        f"{job.state.value.upper()}"
    ]
    if job.error:
        out.append(f"  error          {job.error}")
    out.append(f"  total time     {human_ms(_num(r, 'total_ms'))}")
    if _num(r, "running_on_dest_ms") is not None:
        out.append(f"  running on destination after {human_ms(_num(r, 'running_on_dest_ms'))}")
    out.append(f"  downtime       {human_ms(_num(r, 'downtime_ms'))} (libvirt)")
    gap = _num(r, "heartbeat_gap_ms")
    if gap is not None or "heartbeat_lost" in r:
        lost = r.get("heartbeat_lost")
        out.append(f"  heartbeat gap  {human_ms(gap)}, lost {lost if lost is not None else '-'}")
    data = _num(r, "data_bytes")
    iterations = _num(r, "iterations")
    if data is not None or iterations is not None:
        iters = f" in {int(iterations)} iterations" if iterations is not None else ""
        basis = str(r.get("data_bytes_basis") or "")
        sent = "unknown" if data is None else human_bytes(data)
        if data is not None and basis.startswith("at least"):
            sent = f"at least {sent}"
        out.append(f"  data sent      {sent}{iters}")
    for key, label in (("unconfirmed", "not confirmed"), ("confirmed", "confirmed")):
        value = r.get(key)
        if key == "unconfirmed" and value:
            out.append(f"  {label:<14} {', '.join(map(str, value))} did not answer")
        elif key == "confirmed" and isinstance(value, dict) and value.get("detail"):
            out.append(f"  {label:<14} {value['detail']}")
    disks = r.get("disks") or {}
    if isinstance(disks, dict) and disks:
        out.append("  disks:")
        for target, d in sorted(disks.items()):
            if isinstance(d, dict):
                mode = f", {d.get('mode')} copy" if d.get("mode") and not r.get("cold") else ""
                out.append(f"    - {target}: {d.get('source')} -> {d.get('target')} "
                           f"({d.get('format')}, {human_bytes(_num(d, 'capacity'))}, "
                           f"{human_bytes(_num(d, 'target_allocation'))} allocated{mode})")
    warnings = r.get("warnings") or []
    if warnings:
        out.append("  pre-flight warnings:")
        out += [f"    - {w.get('code')}: {w.get('message')}" for w in warnings
                if isinstance(w, dict)]
    actions = r.get("policy_actions") or []
    if actions:
        out.append("  policy actions:")
        out += [f"    - {a}" for a in actions]
    if job.events:
        out.append("  phases:")
        t0 = job.events[0].at
        width = max(len(e.phase) for e in job.events)
        for e in job.events:
            out.append(f"    +{e.at - t0:8.3f} s  {e.phase.ljust(width)}  {e.message}".rstrip())
    return "\n".join(out)


def check_report(report: CheckOut) -> str:
    """One row per requirement, failing rows first, then the verdict."""
    order = {"error": 0, "warning": 1, "pass": 2, "n/a": 3}
    rows = sorted(report.findings, key=lambda f: order.get(f.status, 9))
    lines = [f"Pre-flight for {report.vm} ({report.kind} move):"]
    for f in rows:
        objects = ", ".join(f"{k} {v}" for k, v in f.objects.items())
        lines.append(f"  [{f.status.upper():7}] {f.code:28} {f.message}")
        if objects:
            lines.append(f"  {'':9} {'':28} objects: {objects}")
        if f.remedy and f.status in ("error", "warning"):
            lines.append(f"  {'':9} {'':28} remedy: {f.remedy}")
    verdict = "allowed" if report.allowed else "refused"
    lines.append(f"{verdict}: {report.errors} error(s), {report.warnings} warning(s), "
                 f"{len(report.findings)} requirement(s) checked")
    return "\n".join(lines)

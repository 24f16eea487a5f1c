"""Text output for the CLI: aligned tables, human sizes, progress lines, job reports.

Everything here is a pure function returning strings, so the formatting is
testable without a terminal or a server.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterable, Sequence

from ferry.api.schemas import (
    AuditOut,
    CheckOut,
    DatastoreOut,
    EvcReportOut,
    FindingOut,
    HostOut,
    JobOut,
    NetworkOut,
    TokenOut,
    UserOut,
    VMOut,
)
from ferry.reports import (
    ColdReport,
    CopyProgress,
    DiskReport,
    EvacuationProgress,
    LiveProgress,
    LiveReport,
    StorageReport,
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


def clock(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def job_duration(job: JobOut, now: float | None = None) -> str:
    if job.started_at is None:
        return "-"
    end = job.finished_at if job.finished_at is not None else (now or time.time())
    return human_ms((end - job.started_at) * 1000)


def jobs_table(jobs: Sequence[JobOut]) -> str:
    rows = [
        (j.id, j.kind, j.vm, f"{j.source_host} -> {j.dest_host or '-'}", j.state.value, j.phase,
         clock(j.created_at), job_duration(j), j.requested_by or "-")
        for j in jobs
    ]
    return table(("ID", "KIND", "VM", "HOSTS", "STATE", "PHASE", "CREATED", "DURATION", "BY"),
                 rows)


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


def progress_line(job: JobOut, width: int = 20) -> str:
    """``precopy  [#####.....]  612 MiB/1.0 GiB  remaining 412 MiB  iter 3 ...``."""
    p = job.progress
    parts = [(p.phase if p is not None else None) or job.phase or job.state.value]
    if isinstance(p, CopyProgress):
        # A storage move: one figure per disk, and the copy's mode.
        for target, d in sorted(p.disks.items()):
            mode = f", {d.mode}" if d.mode else ""
            parts.append(f"{target} {human_bytes(d.copied)}/{human_bytes(d.total)}"
                         + (f" at {human_bytes(d.rate_bps)}/s" if d.rate_bps is not None else "")
                         + f" (left {human_bytes(d.remaining)}{mode})")
    elif isinstance(p, EvacuationProgress):
        # An evacuation: how its moves stand.
        states = [v.state for v in p.vms.values()]
        moved = states.count("succeeded")
        parts.append(f"{moved}/{len(states)} moved, {states.count('running')} moving, "
                     f"{states.count('queued')} queued, {len(p.not_moved)} stuck")
    elif isinstance(p, LiveProgress):
        parts += _live_progress(p, width)
    return "  ".join(parts)


def _live_progress(p: LiveProgress, width: int) -> list[str]:
    parts = []
    if p.disk_total:
        # Shared-nothing: QEMU copies the disks first, then the memory.
        parts.append(f"disks {human_bytes(p.disk_processed)}/{human_bytes(p.disk_total)}")
    if p.memory_total and p.memory_processed is not None:
        filled = min(width, int(width * p.memory_processed / p.memory_total))
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}]")
        parts.append(f"{human_bytes(p.memory_processed)}/{human_bytes(p.memory_total)}")
    if p.memory_remaining is not None:
        parts.append(f"remaining {human_bytes(p.memory_remaining)}")
    if p.iteration is not None:
        parts.append(f"iter {p.iteration}")
    if p.dirty_rate_bps is not None:
        parts.append(f"dirty {human_bytes(p.dirty_rate_bps)}/s")
    if p.memory_bps is not None:
        parts.append(f"bw {human_bytes(p.memory_bps)}/s")
    if p.elapsed_ms is not None:
        parts.append(human_ms(p.elapsed_ms))
    return parts


def job_report(job: JobOut) -> str:
    """The end-of-migration summary: outcome, timings, data, policy actions, phases."""
    r = job.report
    out = [
        f"Job {job.id}: {job.kind} {job.vm} {job.source_host} -> {job.dest_host or '-'}: "
        f"{job.state.value.upper()}"
    ]
    if job.requested_by:
        out.append(f"  requested by   {job.requested_by}")
    if job.error:
        out.append(f"  error          {job.error}")
    out.append(f"  total time     {human_ms(r.total_ms if r is not None else None)}")
    if isinstance(r, LiveReport):
        out += _live_report(r)
    elif isinstance(r, StorageReport):
        out += _heartbeat(r.heartbeat_gap_ms, r.heartbeat_lost) + _disks(r.disks, True)
    elif isinstance(r, ColdReport):
        if r.transport:
            out.append(f"  stream         {r.transport}")
        out += _disks(r.disks, with_mode=False)  # a cold copy is neither mode
    if job.events:
        out.append("  phases:")
        t0 = job.events[0].at
        width = max(len(e.phase) for e in job.events)
        for e in job.events:
            out.append(f"    +{e.at - t0:8.3f} s  {e.phase.ljust(width)}  {e.message}".rstrip())
    return "\n".join(out)


def _live_report(r: LiveReport) -> list[str]:
    out = []
    if r.running_on_dest_ms is not None:
        out.append(f"  running on destination after {human_ms(r.running_on_dest_ms)}")
    out.append(f"  downtime       {human_ms(r.downtime_ms)} (libvirt)")
    if r.encrypted is not None:
        out.append("  stream         " + ("encrypted (TLS)" if r.encrypted
                                          else "CLEAR TEXT (allowed by the admin)"))
    out += _heartbeat(r.heartbeat_gap_ms, r.heartbeat_lost)
    if r.data_bytes is not None or r.iterations is not None:
        iters = f" in {r.iterations} iterations" if r.iterations is not None else ""
        sent = "unknown" if r.data_bytes is None else human_bytes(r.data_bytes)
        if r.data_bytes is not None and (r.data_bytes_basis or "").startswith("at least"):
            sent = f"at least {sent}"
        out.append(f"  data sent      {sent}{iters}")
    if r.unconfirmed:
        out.append(f"  {'not confirmed':<14} {', '.join(r.unconfirmed)} did not answer")
    if r.confirmed is not None and r.confirmed.detail:
        out.append(f"  {'confirmed':<14} {r.confirmed.detail}")
    out += _disks(r.disks, with_mode=True)
    if r.warnings:
        out.append("  pre-flight warnings:")
        out += [f"    - {w.code}: {w.message}" for w in r.warnings]
    if r.policy_actions:
        out.append("  policy actions:")
        out += [f"    - {a}" for a in r.policy_actions]
    return out


def _heartbeat(gap: float | None, lost: int | None) -> list[str]:
    if gap is None and lost is None:
        return []
    return [f"  heartbeat gap  {human_ms(gap)}, lost {lost if lost is not None else '-'}"]


def _disks(disks: dict[str, DiskReport], with_mode: bool) -> list[str]:
    if not disks:
        return []
    out = ["  disks:"]
    for target, d in sorted(disks.items()):
        mode = f", {d.mode} copy" if d.mode and with_mode else ""
        out.append(f"    - {target}: {d.source} -> {d.target} ({d.format}, "
                   f"{human_bytes(d.capacity)}, {human_bytes(d.target_allocation)} "
                   f"allocated{mode})")
    return out


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


def users_table(users: Sequence[UserOut]) -> str:
    return table(("USER", "ROLE", "CREATED"),
                 [(u.name, u.role.value, clock(u.created_at)) for u in users])


def token_state(token: TokenOut, now: float) -> str:
    if token.revoked_at is not None:
        return f"revoked {clock(token.revoked_at)}"
    if token.expires_at <= now:
        return "expired"
    return "active"


def tokens_table(tokens: Sequence[TokenOut], now: float | None = None) -> str:
    """Tokens as listed: ids and dates, never a secret (the API has none to give)."""
    when = time.time() if now is None else now
    return table(("ID", "USER", "LABEL", "CREATED", "EXPIRES", "LAST USED", "STATE"), [
        (t.id, t.user, t.label or "-", clock(t.created_at), clock(t.expires_at),
         clock(t.last_used_at), token_state(t, when)) for t in tokens])


def audit_table(entries: Sequence[AuditOut]) -> str:
    return table(("WHEN", "USER", "FROM", "ACTION", "OBJECT", "STATUS", "OUTCOME"), [
        (clock(e.at), e.user if e.token_id is None or e.user != "anonymous"
         else f"anonymous (token {e.token_id})", e.address, e.action, e.target or "-",
         e.status, e.outcome or "-") for e in entries])

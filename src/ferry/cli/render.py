"""What the CLI shows: tables, human sizes, progress, job and pre-flight reports.

Every function here is pure: it takes the API's data and returns a Rich
renderable (or a string), so the formatting is testable without a terminal or
a server; ``console.to_text`` turns a renderable into the plain text a pipe
gets, and ``console.show`` prints it. Data always goes in as ``Text``, never as
markup: a VM name or an error message with ``[brackets]`` is printed as it is.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ferry.api.schemas import (
    AuditOut,
    DatastoreOut,
    EvcReportOut,
    HostOut,
    JobOut,
    NetworkOut,
    TokenOut,
    UserOut,
    VMOut,
)

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

# Colour says at a glance what the words say in full; plain text keeps the words.
ERROR, WARNING, GOOD = "bold red", "yellow", "green"
_FINDING_STYLE = {"error": ERROR, "warning": WARNING, "pass": GOOD, "n/a": "dim"}
_JOB_STYLE = {"succeeded": f"bold {GOOD}", "failed": ERROR, "cancelled": WARNING,
              "cancelling": WARNING, "running": "cyan"}
BAR_WIDTH = 20  # columns of a memory-copy bar on a terminal
LABEL_WIDTH = 14  # the label column of a job report


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


def _text(value: object, style: str = "") -> Text:
    if isinstance(value, Text):
        return value
    return Text("-" if value is None else str(value), style=style)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]],
          right: Collection[str] = (), whole: Collection[str] = ()) -> Table:
    """Columns as wide as their widest cell, two spaces apart, a header and no lines:
    as plain text, one row per line that grep and ``split()`` read. On a narrow
    terminal long cells wrap inside their column (``fold``), never cut short, except
    the ``whole`` columns: ids a user copies, which the other columns make room for."""
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        grid.add_column(header, overflow="fold", no_wrap=header in whole,
                        justify="right" if header in right else "left")
    for row in rows:
        grid.add_row(*(_text(cell) for cell in row))
    return grid


def fields(rows: Iterable[tuple[object, object]], label_width: int = 0, gap: int = 2) -> Table:
    """``label  value`` lines, values aligned; a long value wraps under itself."""
    grid = Table.grid(padding=(0, gap))
    grid.add_column(min_width=label_width, no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(_text(label), _text(value))
    return grid


def indent(renderable: RenderableType, by: int = 2) -> Padding:
    return Padding(renderable, (0, 0, 0, by), expand=False)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def hosts_table(hosts: Sequence[HostOut]) -> Table:
    rows = []
    for h in hosts:
        if h.maintenance:
            state = Text("maintenance", style=WARNING)
        elif h.connected:
            state = Text("connected")
        else:
            state = Text("disconnected", style=ERROR)
        memory = f"{human_mib(h.free_memory_mib)} free of {human_mib(h.memory_mib)}"
        rows.append(
            (h.name, h.cluster or "-", state, h.cpus or "-", memory, h.libvirt_version,
             h.migration_address, Text(h.error, style=ERROR) if h.error else h.uri)
        )
    return table(("NAME", "CLUSTER", "STATE", "CPUS", "MEMORY", "LIBVIRT", "MIGRATION ADDR",
                  "URI / ERROR"), rows)


def host_settings(host: HostOut) -> Padding:
    """What an admin set on ``host`` (``ferry host set``), a line each."""
    return indent(fields((
        ("migration", "on" if host.migration_enabled else "off"),
        ("max migrations", host.max_migrations),
        ("memory limit", human_mib(host.memory_limit_mib)
         if host.memory_limit_mib is not None else "none"),
        ("migration bandwidth", f"{host.migration_bandwidth_mibps} MiB/s"
         if host.migration_bandwidth_mibps is not None else "no limit"),
        ("clear-text migration", "allowed" if host.allow_cleartext_migration else "refused"),
    )))


def moving(vm: VMOut) -> str | None:
    """'moving to host3 (job 1a2b…)', or None for a VM that is not in a move."""
    hold = vm.moving
    if hold is None:
        return "incoming copy of a migration" if vm.migration == "incoming" else None
    where = f" to {hold.dest_host}" if hold.dest_host else ""
    if hold.job_id is None:
        return f"migrating{where} (not started by ferry)"
    return f"moving{where} (job {hold.job_id}, {hold.kind}, {hold.state})"


def vms_table(vms: Sequence[VMOut]) -> Table:
    shared_name = len({vm.name for vm in vms}) < len(vms)  # then show who is who: the UUID
    rows: list[tuple[object, ...]] = [
        (vm.name, vm.host, *((vm.uuid,) if shared_name else ()),
         Text(_vm_state(vm) + (f", {moving(vm)}" if moving(vm) else ""),
              style="" if vm.current else "dim"),
         vm.vcpus, human_mib(vm.memory_mib), len(vm.disks), vm.lab_address)
        for vm in vms
    ]
    return table(("NAME", "HOST", *(("UUID",) if shared_name else ()), "STATE", "VCPUS",
                  "MEMORY", "DISKS", "ADDRESS"), rows, whole=("UUID",))


def _vm_state(vm: VMOut) -> str:
    # A host that does not answer: its VMs as it last showed them, said to be so.
    return vm.state.value if vm.current else f"{vm.state.value} (not current)"


def vm_detail(vm: VMOut) -> Group:
    cpu = vm.cpu_mode or "-"
    if vm.cpu_model:
        cpu += f" ({vm.cpu_model})"
    rows: list[tuple[object, object]] = [
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
        rows.append(("CPU affinity", pins))
    if vm.kernel:
        rows.append(("Kernel", vm.kernel))
    parts: list[RenderableType] = [fields(rows)]
    if vm.disks:
        disk_rows = [
            (d.target, d.device, d.driver_format, d.source_type, d.source or "(empty)")
            for d in vm.disks
        ]
        parts += [Text(), Text("Disks:"),
                  indent(table(("TARGET", "DEVICE", "FORMAT", "TYPE", "SOURCE"), disk_rows))]
    if vm.interfaces:
        nic_rows = [(i.mac, i.kind, i.network, i.portgroup, i.model) for i in vm.interfaces]
        parts += [Text(), Text("Interfaces:"),
                  indent(table(("MAC", "KIND", "NETWORK", "PORTGROUP", "MODEL"), nic_rows))]
    return Group(*parts)


def datastores_table(datastores: Sequence[DatastoreOut]) -> Table:
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


def networks_table(networks: Sequence[NetworkOut]) -> Table:
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


def job_state(job: JobOut, upper: bool = False) -> Text:
    word = job.state.value
    return Text(word.upper() if upper else word, style=_JOB_STYLE.get(word, ""))


def jobs_table(jobs: Sequence[JobOut]) -> Table:
    rows = [
        (j.id, j.kind, j.vm, f"{j.source_host} -> {j.dest_host or '-'}", job_state(j), j.phase,
         clock(j.created_at), job_duration(j), j.requested_by or "-")
        for j in jobs
    ]
    return table(("ID", "KIND", "VM", "HOSTS", "STATE", "PHASE", "CREATED", "DURATION", "BY"),
                 rows, whole=("ID",))


def evc_report(report: EvcReportOut) -> RenderableType:
    """A cluster's EVC mode and, per host, what the mode hides from its VMs."""
    mode = report.mode
    if mode is None:
        return Text(f"cluster {report.cluster}: EVC is off")
    asked = "" if mode.requested == mode.model else f", asked as '{mode.requested}'"
    lines: list[RenderableType] = [Text(
        f"cluster {report.cluster}: EVC mode {mode.model} ({mode.vendor or 'any vendor'}"
        f"{asked}), {len(mode.features)} CPU features given to every VM it starts")]
    if not report.hosts:
        lines.append(Text("  no hosts yet"))
    for host in report.hosts:
        if host.error:
            lines.append(Text(f"  {host.host}: not asked ({host.error})", style=WARNING))
            continue
        lines.append(Text(f"  {host.host}: host CPU {host.model} "
                          f"({host.vendor or 'vendor unknown'}); the mode hides "
                          f"{len(host.hidden)} feature(s) from its VMs"))
        if host.hidden:
            lines.append(indent(Text(", ".join(host.hidden)), 6))
        if host.missing:
            lines.append(Text(f"    cannot run the mode: lacks {', '.join(host.missing)}",
                              style=ERROR))
    if report.not_at_mode:
        lines.append(Text(f"  running with another CPU until ferry starts them again: "
                          f"{', '.join(report.not_at_mode)}"))
    lines += [Text(f"  warning: {w}", style=WARNING) for w in report.warnings]
    return Group(*lines)


def users_table(users: Sequence[UserOut]) -> Table:
    return table(("USER", "ROLE", "CREATED"),
                 [(u.name, u.role.value, clock(u.created_at)) for u in users])


def token_state(token: TokenOut, now: float) -> str:
    if token.revoked_at is not None:
        return f"revoked {clock(token.revoked_at)}"
    if token.expires_at <= now:
        return "expired"
    return "active"


def tokens_table(tokens: Sequence[TokenOut], now: float | None = None) -> Table:
    """Tokens as listed: ids and dates, never a secret (the API has none to give)."""
    when = time.time() if now is None else now
    return table(("ID", "USER", "LABEL", "CREATED", "EXPIRES", "LAST USED", "STATE"), [
        (t.id, t.user, t.label or "-", clock(t.created_at), clock(t.expires_at),
         clock(t.last_used_at), token_state(t, when)) for t in tokens], whole=("ID",))


def audit_table(entries: Sequence[AuditOut]) -> Table:
    return table(("WHEN", "USER", "FROM", "ACTION", "OBJECT", "STATUS", "OUTCOME"), [
        (clock(e.at), e.user if e.token_id is None or e.user != "anonymous"
         else f"anonymous (token {e.token_id})", e.address, e.action, e.target or "-",
         e.status, e.outcome or "-") for e in entries])

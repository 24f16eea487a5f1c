"""What a job and a pre-flight look like in the terminal: progress, reports, findings.

Pure functions from the API's data to Rich renderables, as in :mod:`ferry.cli.render`.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ferry.api.schemas import CheckOut, FindingOut, JobOut
from ferry.cli.render import (
    BAR_WIDTH,
    ERROR,
    GOOD,
    LABEL_WIDTH,
    WARNING,
    fields,
    human_bytes,
    human_ms,
    indent,
    job_state,
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

_FINDING_STYLE = {"error": ERROR, "warning": WARNING, "pass": GOOD, "n/a": "dim"}


def _status(status: str) -> Text:
    return Text(f"[{status.upper()}]", style=_FINDING_STYLE.get(status, ""))


def finding_line(f: FindingOut) -> Text:
    """One finding of a refusal, on one line (it goes to stderr under the error)."""
    line = Text.assemble("  ", _status(f.status), f" {f.code}  {f.message}")
    return line.append(f" — {f.remedy}") if f.remedy else line


def _progress_parts(job: JobOut) -> tuple[list[str], float | None, list[str]]:
    """What goes before a memory-copy bar, how full it is (None: no bar), what goes after."""
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
        return _live_progress(parts, p)
    return parts, None, []


def _live_progress(before: list[str], p: LiveProgress) -> tuple[list[str], float | None,
                                                                 list[str]]:
    if p.disk_total:
        # Shared-nothing: QEMU copies the disks first, then the memory.
        before.append(f"disks {human_bytes(p.disk_processed)}/{human_bytes(p.disk_total)}")
    fraction, after = None, []
    if p.memory_total and p.memory_processed is not None:
        fraction = min(1.0, p.memory_processed / p.memory_total)
        after.append(f"{human_bytes(p.memory_processed)}/{human_bytes(p.memory_total)}")
    if p.memory_remaining is not None:
        after.append(f"remaining {human_bytes(p.memory_remaining)}")
    if p.iteration is not None:
        after.append(f"iter {p.iteration}")
    if p.dirty_rate_bps is not None:
        after.append(f"dirty {human_bytes(p.dirty_rate_bps)}/s")
    if p.memory_bps is not None:
        after.append(f"bw {human_bytes(p.memory_bps)}/s")
    if p.elapsed_ms is not None:
        after.append(human_ms(p.elapsed_ms))
    return before, fraction, after


def _percent(fraction: float) -> str:
    return f"{int(100 * fraction)}%"  # rounded down: 100% only once all is copied


def progress_line(job: JobOut) -> str:
    """``precopy  59%  612 MiB/1.0 GiB  remaining 412 MiB  iter 3 ...``: the plain form."""
    before, fraction, after = _progress_parts(job)
    return "  ".join([*before, *([_percent(fraction)] if fraction is not None else []), *after])


def progress_view(job: JobOut, bar: bool = False) -> RenderableType:
    """The progress line; with ``bar`` (a terminal), the memory copy also drawn as a bar."""
    before, fraction, after = _progress_parts(job)
    if not bar or fraction is None:
        return Text(progress_line(job))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(width=BAR_WIDTH)
    grid.add_column(overflow="fold")
    copied = ProgressBar(total=1.0, completed=fraction, complete_style="cyan",
                         finished_style=GOOD)
    grid.add_row(Text("  ".join(before)), copied, Text("  ".join([_percent(fraction), *after])))
    return grid


def job_report(job: JobOut) -> Group:
    """The end-of-migration summary: outcome, timings, data, policy actions, phases."""
    r = job.report
    parts: list[RenderableType] = [Text.assemble(
        f"Job {job.id}: {job.kind} {job.vm} {job.source_host} -> {job.dest_host or '-'}: ",
        job_state(job, upper=True))]
    rows: list[tuple[object, object]] = []
    if job.requested_by:
        rows.append(("requested by", job.requested_by))
    if job.error:
        rows.append(("error", Text(job.error, style=ERROR)))
    rows.append(("total time", human_ms(r.total_ms if r is not None else None)))
    parts.append(_report_fields(rows))
    if isinstance(r, LiveReport):
        parts += _live_report(r)
    elif isinstance(r, StorageReport):
        parts += [_report_fields(_heartbeat(r.heartbeat_gap_ms, r.heartbeat_lost)),
                  *_disks(r.disks, with_mode=True)]
    elif isinstance(r, ColdReport):
        if r.transport:
            parts.append(_report_fields([("stream", r.transport)]))
        parts += _disks(r.disks, with_mode=False)  # a cold copy is neither mode
    if job.events:
        t0 = job.events[0].at
        phases = Table.grid(padding=(0, 2))
        phases.add_column(no_wrap=True)
        phases.add_column(no_wrap=True)
        phases.add_column(overflow="fold")
        for e in job.events:
            phases.add_row(Text(f"+{e.at - t0:8.3f} s"), Text(e.phase), Text(e.message))
        parts += [Text("  phases:"), indent(phases, 4)]
    return Group(*parts)


def _report_fields(rows: list[tuple[object, object]]) -> Padding:
    return indent(fields(rows, label_width=LABEL_WIDTH, gap=1))


def _live_report(r: LiveReport) -> list[RenderableType]:
    out: list[RenderableType] = []
    if r.running_on_dest_ms is not None:
        out.append(Text(f"  running on destination after {human_ms(r.running_on_dest_ms)}"))
    rows: list[tuple[object, object]] = [("downtime", f"{human_ms(r.downtime_ms)} (libvirt)")]
    if r.encrypted is not None:
        rows.append(("stream", Text("encrypted (TLS)") if r.encrypted
                     else Text("CLEAR TEXT (allowed by the admin)", style=WARNING)))
    rows += _heartbeat(r.heartbeat_gap_ms, r.heartbeat_lost)
    if r.data_bytes is not None or r.iterations is not None:
        iters = f" in {r.iterations} iterations" if r.iterations is not None else ""
        sent = "unknown" if r.data_bytes is None else human_bytes(r.data_bytes)
        if r.data_bytes is not None and (r.data_bytes_basis or "").startswith("at least"):
            sent = f"at least {sent}"
        rows.append(("data sent", f"{sent}{iters}"))
    if r.unconfirmed:
        rows.append(("not confirmed", Text(f"{', '.join(r.unconfirmed)} did not answer",
                                           style=WARNING)))
    if r.confirmed is not None and r.confirmed.detail:
        rows.append(("confirmed", r.confirmed.detail))
    out.append(_report_fields(rows))
    out += _disks(r.disks, with_mode=True)
    if r.warnings:
        out.append(Text("  pre-flight warnings:"))
        out += [indent(Text(f"- {w.code}: {w.message}", style=WARNING), 4) for w in r.warnings]
    if r.policy_actions:
        out.append(Text("  policy actions:"))
        out += [indent(Text(f"- {a}"), 4) for a in r.policy_actions]
    return out


def _heartbeat(gap: float | None, lost: int | None) -> list[tuple[object, object]]:
    if gap is None and lost is None:
        return []
    return [("heartbeat gap",
             Text(f"{human_ms(gap)}, lost {lost if lost is not None else '-'}",
                  style=WARNING if lost else ""))]


def _disks(disks: dict[str, DiskReport], with_mode: bool) -> list[RenderableType]:
    if not disks:
        return []
    out: list[RenderableType] = [Text("  disks:")]
    for target, d in sorted(disks.items()):
        mode = f", {d.mode} copy" if d.mode and with_mode else ""
        out.append(indent(Text(f"- {target}: {d.source} -> {d.target} ({d.format}, "
                               f"{human_bytes(d.capacity)}, {human_bytes(d.target_allocation)} "
                               f"allocated{mode})"), 4))
    return out


def check_report(report: CheckOut) -> Group:
    """One row per requirement, failing rows first, then the verdict."""
    order = {"error": 0, "warning": 1, "pass": 2, "n/a": 3}
    findings = Table.grid(padding=(0, 2))
    findings.add_column(no_wrap=True)
    findings.add_column(no_wrap=True)
    findings.add_column(overflow="fold")
    for f in sorted(report.findings, key=lambda f: order.get(f.status, 9)):
        # Under the message, on lines of their own: the objects it names, the remedy.
        detail = Text(f.message)
        objects = ", ".join(f"{k} {v}" for k, v in f.objects.items())
        if objects:
            detail.append(f"\nobjects: {objects}")
        if f.remedy and f.status in ("error", "warning"):
            detail.append(f"\nremedy: {f.remedy}")
        findings.add_row(_status(f.status), Text(f.code), detail)
    verdict = Text("allowed", style=GOOD) if report.allowed else Text("refused", style=ERROR)
    return Group(
        Text(f"Pre-flight for {report.vm} ({report.kind} move):"),
        indent(findings),
        verdict.append(f": {report.errors} error(s), {report.warnings} warning(s), "
                       f"{len(report.findings)} requirement(s) checked"))

"""A live copy's samples as the chart of it keeps them: few enough to store with every
progress update, spread over the whole copy, every iteration's last sample kept."""

from __future__ import annotations

from collections.abc import Sequence

from ferry.reports import TracePoint
from ferry.virt.base import MigrationStats

MAX_POINTS = 240  # a chart's width in points; a sample every 0.5 s fills it in 2 minutes


def point_of(stats: MigrationStats) -> TracePoint:
    return TracePoint(elapsed_ms=stats.elapsed_ms, iteration=stats.iteration,
                      memory_remaining=stats.memory_remaining,
                      dirty_rate_bps=stats.dirty_rate_bps, memory_bps=stats.memory_bps,
                      disk_remaining=stats.disk_remaining)


def trace_of(samples: Sequence[MigrationStats], limit: int = MAX_POINTS
             ) -> tuple[TracePoint, ...]:
    """``samples`` thinned to at most about ``limit`` points, evenly over time; the last
    sample of each iteration stays, so the chart shows where every pass ended."""
    # Before the copy starts libvirt reports nothing to copy: not a point of the copy.
    samples = [s for s in samples if s.memory_total or s.disk_total]
    if len(samples) <= limit:
        return tuple(point_of(s) for s in samples)
    step = -(-len(samples) // limit)
    keep = set(range(0, len(samples), step)) | {len(samples) - 1}
    keep |= {i for i in range(len(samples) - 1)
             if samples[i].iteration != samples[i + 1].iteration}
    return tuple(point_of(samples[i]) for i in sorted(keep))

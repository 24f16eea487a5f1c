"""A live copy's samples kept for its chart: thinned evenly, every iteration's end kept,
nothing from before the copy began."""

from __future__ import annotations

from ferry.engine.trace import trace_of
from ferry.virt.base import MigrationStats


def sample(ms: int, iteration: int, remaining: int, total: int = 1000) -> MigrationStats:
    return MigrationStats(elapsed_ms=ms, memory_total=total, memory_remaining=remaining,
                          iteration=iteration, dirty_rate_bps=iteration * 10)


def test_a_short_copy_is_kept_whole_without_its_set_up() -> None:
    samples = [sample(0, 0, 0, total=0), sample(500, 1, 900), sample(1000, 2, 300)]
    trace = trace_of(samples)
    assert [(p.elapsed_ms, p.iteration, p.memory_remaining) for p in trace] == [
        (500, 1, 900), (1000, 2, 300)]
    assert trace[1].dirty_rate_bps == 20


def test_a_long_copy_is_thinned_keeping_each_iterations_end_and_the_last_sample() -> None:
    # 1000 samples over 10 iterations of 100 samples each.
    samples = [sample(i * 500, 1 + i // 100, 1000 - i) for i in range(1000)]
    trace = trace_of(samples, limit=50)
    assert len(trace) <= 50 + 10 + 1
    kept = {p.elapsed_ms for p in trace}
    ends = {s.elapsed_ms for i, s in enumerate(samples[:-1])
            if s.iteration != samples[i + 1].iteration}
    assert ends <= kept and samples[-1].elapsed_ms in kept and samples[0].elapsed_ms in kept
    assert [p.elapsed_ms for p in trace] == sorted(kept)

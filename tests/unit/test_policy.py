from ferry.engine.policy import POLICIES, ActionKind, Tracking, decide
from ferry.virt.base import MigrationStats


def stats(iteration: int, remaining: int, elapsed_ms: int = 1000) -> MigrationStats:
    return MigrationStats(iteration=iteration, memory_remaining=remaining, elapsed_ms=elapsed_ms)


def run(samples: list[MigrationStats], policy: str = "default") -> list[str]:
    tracking = Tracking()
    taken: list[str] = []
    for sample in samples:
        tracking, actions = decide(POLICIES[policy], tracking, sample)
        taken += [f"{a.kind.value}:{a.value}" for a in actions]
    return taken


def test_converging_migration_needs_no_escalation() -> None:
    assert run([stats(i, 1000 - 100 * i) for i in range(1, 8)]) == []


def test_stalled_migration_raises_downtime_step_by_step() -> None:
    taken = run([stats(1, 500)] + [stats(i, 500) for i in range(2, 12)])
    assert taken == ["set-downtime:500", "set-downtime:1000"]


def test_same_sample_twice_is_not_a_new_iteration() -> None:
    tracking = Tracking()
    policy = POLICIES["default"]
    tracking, _ = decide(policy, tracking, stats(3, 100))
    again, actions = decide(policy, tracking, stats(3, 100))
    assert again == tracking and actions == []


def test_postcopy_policy_switches_after_stalls_and_then_stops_deciding() -> None:
    taken = run([stats(1, 500)] + [stats(i, 600) for i in range(2, 10)], "postcopy")
    assert taken == ["set-downtime:500", "postcopy:0"]


def test_default_policy_never_uses_postcopy() -> None:
    assert all(s.action is not ActionKind.POSTCOPY for s in POLICIES["default"].steps)


def test_time_limit_aborts() -> None:
    limit = POLICIES["default"].max_seconds * 1000
    assert run([stats(1, 500, elapsed_ms=limit + 1)]) == ["abort:0"]


def test_default_policy_never_allows_more_than_a_second_of_pause() -> None:
    policy = POLICIES["default"]
    downtimes = [policy.initial_downtime_ms] + [
        s.value for s in policy.steps if s.action is ActionKind.SET_DOWNTIME]
    assert max(downtimes) <= 1000

from dataclasses import replace

from ferry.engine.policy import (
    DEFAULT_POLICY,
    POLICIES,
    ActionKind,
    Prediction,
    Tracking,
    decide,
    policy_named,
    postcopy_blocker,
    predict_precopy,
)
from ferry.virt.base import MigrationStats


def stats(iteration: int, remaining: int, elapsed_ms: int = 1000) -> MigrationStats:
    return MigrationStats(iteration=iteration, memory_remaining=remaining, elapsed_ms=elapsed_ms)


def run(samples: list[MigrationStats], policy: str = "throttle") -> list[str]:
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
    policy = POLICIES["throttle"]
    tracking, _ = decide(policy, tracking, stats(3, 100))
    again, actions = decide(policy, tracking, stats(3, 100))
    assert again == tracking and actions == []


def test_postcopy_policy_switches_after_stalls_and_then_stops_deciding() -> None:
    taken = run([stats(1, 500)] + [stats(i, 600) for i in range(2, 10)], "postcopy")
    assert taken == ["set-downtime:500", "postcopy:0"]


def test_throttle_policy_never_uses_postcopy() -> None:
    assert all(s.action is not ActionKind.POSTCOPY for s in POLICIES["throttle"].steps)


def test_time_limit_aborts() -> None:
    limit = POLICIES["throttle"].max_seconds * 1000
    assert run([stats(1, 500, elapsed_ms=limit + 1)]) == ["abort:0"]


def test_throttle_policy_never_allows_more_than_a_second_of_pause() -> None:
    policy = POLICIES["throttle"]
    downtimes = [policy.initial_downtime_ms] + [
        s.value for s in policy.steps if s.action is ActionKind.SET_DOWNTIME]
    assert max(downtimes) <= 1000


MIB = 2**20


def busy(iteration: int, dirty_mibps: float, link_mibps: float, left_mib: int) -> MigrationStats:
    return MigrationStats(iteration=iteration, memory_remaining=left_mib * MIB, elapsed_ms=1000,
                          dirty_rate_bps=int(dirty_mibps * MIB), memory_bps=int(link_mibps * MIB))


def test_auto_switches_to_postcopy_after_the_first_pass_when_the_guest_outruns_the_link() -> None:
    # The lab's busy guest on a 1 Gbit/s link: it dirties more than the link carries.
    tracking, first = decide(POLICIES["auto"], Tracking(), busy(1, 0, 110, 900))
    tracking, actions = decide(POLICIES["auto"], tracking, busy(2, 130, 110, 250))
    assert first == [] and [a.kind for a in actions] == [ActionKind.POSTCOPY]
    assert "dirties 130.0 MiB/s" in actions[0].reason and "carries 110.0 MiB/s" in actions[0].reason
    # Once in post-copy nothing more is decided.
    assert decide(POLICIES["auto"], tracking, busy(3, 130, 110, 250))[1] == []


def test_auto_keeps_precopy_when_it_finishes_in_a_few_passes_and_says_why() -> None:
    tracking, _ = decide(POLICIES["auto"], Tracking(), busy(1, 0, 110, 900))
    _, actions = decide(POLICIES["auto"], tracking, busy(2, 50, 110, 250))
    assert [a.kind for a in actions] == [ActionKind.NOTE]
    assert actions[0].describe().startswith("pre-copy finishes in about 3 more pass(es)")


def test_auto_switches_when_precopy_would_need_too_many_passes() -> None:
    # Dirtying 95 % of the link's rate: converging in theory, after dozens of passes.
    _, actions = decide(POLICIES["auto"], Tracking(iteration=1), busy(2, 104.5, 110, 250))
    assert [a.kind for a in actions] == [ActionKind.POSTCOPY]
    assert "would need" in actions[0].reason


def test_auto_without_postcopy_throttles_and_says_so() -> None:
    no_postcopy = replace(POLICIES["auto"], allow_postcopy=False)
    _, actions = decide(no_postcopy, Tracking(iteration=1), busy(2, 130, 110, 250))
    assert [a.kind for a in actions] == [ActionKind.NOTE]
    assert "throttling instead" in actions[0].reason


def test_prediction_needs_a_measured_link_rate() -> None:
    assert predict_precopy(busy(2, 130, 0, 250), 300) is None
    assert predict_precopy(busy(2, 0, 110, 250), 300) == Prediction(1, 0, 110 * MIB, 250 * MIB)
    assert predict_precopy(busy(2, 500, 110, 10), 300) == Prediction(0, 500 * MIB, 110 * MIB,
                                                                     10 * MIB)


def test_postcopy_is_blocked_where_a_link_failure_could_not_be_recovered_from() -> None:
    recent = {"host1": "9.0.0", "host2": "9.0.0"}
    assert postcopy_blocker(recent, copies_disks=False, domain_type="kvm") is None
    old = postcopy_blocker({"host1": "9.0.0", "host2": "8.0.0"}, False, "kvm")
    assert old is not None and "host host2's libvirt 8.0.0 cannot resume" in old
    unknown = postcopy_blocker({"host1": None, "host2": "9.0.0"}, False, "kvm")
    assert unknown is not None and "host1's libvirt (version unknown)" in unknown
    assert "TCG" in (postcopy_blocker(recent, False, "qemu") or "")
    assert "disks are copied" in (postcopy_blocker(recent, True, "kvm") or "")


def test_only_a_policy_named_for_the_move_takes_postcopy_at_a_risk() -> None:
    assert [n for n, p in POLICIES.items() if p.postcopy_at_any_risk] == ["postcopy"]
    assert not POLICIES["throttle"].allow_postcopy


def test_auto_is_the_default_and_the_former_name_of_throttle_still_resolves() -> None:
    assert DEFAULT_POLICY == "auto" and policy_named("default") is POLICIES["throttle"]
    assert "default" not in POLICIES  # listed under its name only

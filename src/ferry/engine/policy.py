"""Convergence policy for live migration, as data, with one pure decision step.

A policy is a list of escalation steps. Each sample of libvirt's job stats is
fed to :func:`decide`, which returns the actions to take now and the new
tracking state. No IO here: the migration runner applies the actions.

Why escalate at all: pre-copy converges only while the link moves memory faster
than the guest dirties it. QEMU's own default (300 ms max downtime, no
throttling) can iterate for ever under a busy guest; our design notes saw a
guest rewriting 200 MiB not converge in 100 s at 1 Gbit/s. ferry first lets
QEMU try, then allows a longer pause, and relies on auto-converge (vCPU
throttling) so the dirty rate falls below the link rate. Post-copy is
offered only by an explicit policy, because a network failure during
post-copy loses the VM: neither side holds all of its memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from ferry.errors import InputError
from ferry.virt.base import MigrationStats


class ActionKind(StrEnum):
    SET_DOWNTIME = "set-downtime"
    POSTCOPY = "postcopy"
    ABORT = "abort"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    value: int = 0
    reason: str = ""

    def describe(self) -> str:
        if self.kind is ActionKind.SET_DOWNTIME:
            return f"max downtime set to {self.value} ms ({self.reason})"
        if self.kind is ActionKind.POSTCOPY:
            return f"switched to post-copy ({self.reason})"
        return f"aborted ({self.reason})"


@dataclass(frozen=True)
class Step:
    """Take ``action`` once the migration has stalled for ``stalls`` iterations."""

    stalls: int
    action: ActionKind
    value: int = 0


@dataclass(frozen=True)
class ConvergencePolicy:
    name: str
    description: str
    initial_downtime_ms: int
    auto_converge: bool
    allow_postcopy: bool
    steps: tuple[Step, ...]
    max_seconds: int  # give up (VM stays on the source) after this long
    # vCPU throttle QEMU applies once it sees no convergence, then adds per round.
    # QEMU's own 20 % + 10 % lets a busy guest outrun a 1 Gbit/s link for many
    # rounds; starting higher slows the guest for seconds instead of pausing it.
    throttle_initial_pct: int | None = None
    throttle_increment_pct: int | None = None


DEFAULT_POLICY = "default"

POLICIES: dict[str, ConvergencePolicy] = {
    "default": ConvergencePolicy(
        name="default",
        description="pre-copy only: after 3 and 6 iterations without progress the pause "
                    "allowed grows to 500 ms, then 1 s; the guest's vCPUs are throttled "
                    "(from 40 %, +20 % a round) until its writes fall below the link's rate",
        initial_downtime_ms=300,
        auto_converge=True,
        allow_postcopy=False,
        steps=(
            Step(stalls=3, action=ActionKind.SET_DOWNTIME, value=500),
            Step(stalls=6, action=ActionKind.SET_DOWNTIME, value=1000),
        ),
        max_seconds=900,
        throttle_initial_pct=40,
        throttle_increment_pct=20,
    ),
    "postcopy": ConvergencePolicy(
        name="postcopy",
        description="pre-copy, then post-copy after 4 iterations without progress: the VM "
                    "runs on the destination and fetches what is left; a link cut during "
                    "post-copy loses the VM until post-copy recovery is in place",
        initial_downtime_ms=300,
        auto_converge=False,
        allow_postcopy=True,
        steps=(
            Step(stalls=2, action=ActionKind.SET_DOWNTIME, value=500),
            Step(stalls=4, action=ActionKind.POSTCOPY),
        ),
        max_seconds=900,
    ),
}


def policy_named(name: str) -> ConvergencePolicy:
    """The policy called ``name``; InputError naming it and every choice otherwise."""
    if name not in POLICIES:
        raise InputError(f"unknown convergence policy {name!r}: choose one of "
                         f"{', '.join(sorted(POLICIES))} ('ferry policy list' describes them)")
    return POLICIES[name]


@dataclass(frozen=True)
class Tracking:
    """What the decision step remembers between samples."""

    iteration: int = 0
    best_remaining: int | None = None
    stalls: int = 0
    steps_taken: int = 0
    postcopy: bool = False


def decide(
    policy: ConvergencePolicy, tracking: Tracking, stats: MigrationStats
) -> tuple[Tracking, list[Action]]:
    """Pure: given the latest stats, what to do now.

    A *stall* is an iteration that ended with no less memory remaining than
    the best seen so far: the copy is not gaining on the guest.
    """
    actions: list[Action] = []
    if stats.elapsed_ms > policy.max_seconds * 1000:
        return tracking, [Action(ActionKind.ABORT, reason=f"not done in {policy.max_seconds} s")]
    if tracking.postcopy or stats.iteration <= tracking.iteration:
        return tracking, actions
    # A new iteration started: judge the one that just ended.
    remaining = stats.memory_remaining
    stalls = tracking.stalls
    best = tracking.best_remaining
    if stats.iteration > 1:
        if best is not None and remaining >= best:
            stalls += 1
        else:
            best = remaining
    new = replace(tracking, iteration=stats.iteration, best_remaining=best, stalls=stalls)
    while new.steps_taken < len(policy.steps):
        step = policy.steps[new.steps_taken]
        if new.stalls < step.stalls:
            break
        if step.action is ActionKind.POSTCOPY and not policy.allow_postcopy:
            new = replace(new, steps_taken=new.steps_taken + 1)
            continue
        reason = f"{new.stalls} iterations without progress, iteration {stats.iteration}"
        actions.append(Action(step.action, step.value, reason))
        new = replace(new, steps_taken=new.steps_taken + 1,
                      postcopy=new.postcopy or step.action is ActionKind.POSTCOPY)
    return new, actions

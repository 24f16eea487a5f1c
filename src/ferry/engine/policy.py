"""Convergence policy for live migration, as data, with one pure decision step.

A policy is a list of escalation steps. Each sample of libvirt's job stats is
fed to :func:`decide`, which returns the actions to take now and the new
tracking state. No IO here: the migration runner applies the actions.

Why escalate at all: pre-copy converges only while the link moves memory faster
than the guest dirties it. QEMU's own default (300 ms max downtime, no
throttling) can iterate for ever under a busy guest; our design notes saw a
guest rewriting 200 MiB not converge in 100 s at 1 Gbit/s. ferry first lets
QEMU try, then allows a longer pause, and relies on auto-converge (vCPU
throttling) so the dirty rate falls below the link rate.

The ``auto`` policy predicts instead of waiting for stalls: once the first pass
has ended it compares the guest's dirty rate with the rate the link carried
(:func:`predict_precopy`). If pre-copy cannot get the memory left under what
the allowed pause carries within a few passes, it switches to post-copy, which
is then armed with recovery: a link cut pauses the VM on both sides and ferry
resumes it (:mod:`ferry.engine.recovery`). Where post-copy is not possible it
throttles as ``throttle`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from ferry.errors import InputError
from ferry.virt.base import MigrationStats


class ActionKind(StrEnum):
    SET_DOWNTIME = "set-downtime"
    POSTCOPY = "postcopy"
    ABORT = "abort"
    NOTE = "note"  # a decision to keep going as it is, recorded with its figures


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
        if self.kind is ActionKind.NOTE:
            return self.reason
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
    # After the first pass, predict whether pre-copy finishes (see predict_precopy);
    # if not, switch to post-copy where it is allowed.
    predict: bool = False
    # Post-copy even where a link failure could not be recovered from: only a policy
    # an admin names for the move takes that risk, and the job says so.
    postcopy_at_any_risk: bool = False


DEFAULT_POLICY = "auto"
# Names policies had before: a job recorded under one runs as it was asked.
FORMER_NAMES = {"default": "throttle"}
# Passes pre-copy may take after the first before the prediction gives up on it.
PREDICTION_PASSES = 5

_THROTTLE = ConvergencePolicy(
    name="throttle",
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
)

POLICIES: dict[str, ConvergencePolicy] = {
    # The throttling policy's steps, unless its prediction chose post-copy.
    "auto": replace(
        _THROTTLE,
        name="auto",
        description="pre-copy while it can finish: after the first pass the guest's dirty "
                    f"rate is weighed against the link's; if pre-copy cannot finish within "
                    f"{PREDICTION_PASSES} more passes and a 300 ms pause, the VM switches to "
                    "post-copy with recovery armed (a link cut pauses it on both hosts until "
                    "the link returns); where post-copy is not possible, it throttles as "
                    "'throttle' does",
        allow_postcopy=True,
        predict=True,
    ),
    "throttle": _THROTTLE,
    "postcopy": ConvergencePolicy(
        name="postcopy",
        description="as 'auto' decides, never throttled, and post-copy also where a link "
                    "failure during it could not be recovered from (a TCG guest), saying so; "
                    "post-copy at the latest after 4 iterations without progress",
        initial_downtime_ms=300,
        auto_converge=False,
        allow_postcopy=True,
        steps=(
            Step(stalls=2, action=ActionKind.SET_DOWNTIME, value=500),
            Step(stalls=4, action=ActionKind.POSTCOPY),
        ),
        max_seconds=900,
        predict=True,
        postcopy_at_any_risk=True,
    ),
}


# libvirt resumes a post-copy interrupted by a link failure from this version on
# (VIR_MIGRATE_POSTCOPY_RESUME); without it a link cut in post-copy loses the VM.
POSTCOPY_RESUME_LIBVIRT = (8, 5, 0)

# Seen in the lab (QEMU 7.2, TCG guests): a TCG vCPU delivers interrupts holding QEMU's
# main lock; when the page it reads is still on the source and the link has failed, it
# waits for that page with the lock held, QEMU's monitor stops answering, and libvirt
# can never ask for the resume that would bring the page. A KVM guest's interrupts are
# delivered by the kernel, without that lock.
TCG_POSTCOPY = ("the VM runs with TCG (software emulation): a link failure during "
                "post-copy can leave QEMU unable to answer libvirt, so the move could not "
                "be resumed and the VM would stay paused on both hosts")


def postcopy_blocker(libvirt_versions: dict[str, str | None], copies_disks: bool,
                     domain_type: str) -> str | None:
    """Why this move may not use post-copy safely (None: it may), for the policy to
    throttle instead and for the job to say so."""
    if copies_disks:
        return ("its disks are copied with its memory: ferry keeps moves that copy disks "
                "in pre-copy")
    for host, version in sorted(libvirt_versions.items()):
        numbers = tuple(int(part) for part in (version or "").split(".") if part.isdigit())
        if numbers < POSTCOPY_RESUME_LIBVIRT:
            return (f"host {host}'s libvirt {version or '(version unknown)'} cannot resume a "
                    "post-copy after a link failure (8.5.0 or later is needed)")
    if domain_type != "kvm":
        return TCG_POSTCOPY
    return None


def bandwidth_limit(asked: int | None,
                    host_limits: dict[str, int | None]) -> tuple[int | None, str]:
    """The MiB/s a live move may use on the migration network (None: no limit) and why:
    the lowest of the move's own limit and its hosts'."""
    limits = [(asked, "asked for this move")] if asked else []
    limits += [(limit, f"host {host}'s limit") for host, limit in sorted(host_limits.items())
               if limit]
    if not limits:
        return None, "no limit"
    lowest = min(value for value, _ in limits)
    return lowest, ", ".join(why for value, why in limits if value == lowest)


def policy_named(name: str) -> ConvergencePolicy:
    """The policy called ``name``; InputError naming it and every choice otherwise."""
    name = FORMER_NAMES.get(name, name)
    if name not in POLICIES:
        raise InputError(f"unknown convergence policy {name!r}: choose one of "
                         f"{', '.join(sorted(POLICIES))} ('ferry policy list' describes them)")
    return POLICIES[name]


def choose_policy(asked: str | None, vm: str, vm_default: str | None,
                  cluster: str | None, cluster_default: str | None) -> tuple[str, str]:
    """The policy a move of ``vm`` runs with, and why: the one asked for the move, else
    the VM's default, else its cluster's, else ferry's. Names are checked as they were
    set; a default naming a policy that no longer exists is refused, naming it."""
    if asked is not None:
        return policy_named(asked).name, "asked for this move"
    if vm_default is not None:
        return policy_named(vm_default).name, f"VM {vm}'s default"
    if cluster_default is not None and cluster is not None:
        return policy_named(cluster_default).name, f"cluster {cluster}'s default"
    return DEFAULT_POLICY, "ferry's default"


@dataclass(frozen=True)
class Tracking:
    """What the decision step remembers between samples."""

    iteration: int = 0
    best_remaining: int | None = None
    stalls: int = 0
    steps_taken: int = 0
    postcopy: bool = False
    predicted: bool = False


@dataclass(frozen=True)
class Prediction:
    """Whether pre-copy gets the memory left under what the allowed pause carries."""

    passes: int | None  # passes still needed; None: never (the guest outruns the link)
    dirty_bps: int
    link_bps: int
    remaining: int

    @property
    def converges(self) -> bool:
        return self.passes is not None and self.passes <= PREDICTION_PASSES

    def describe(self) -> str:
        mib = 2**20
        figures = (f"the guest dirties {self.dirty_bps / mib:.1f} MiB/s, the link carries "
                   f"{self.link_bps / mib:.1f} MiB/s, {self.remaining / mib:.0f} MiB left")
        if self.passes is None:
            return f"pre-copy cannot finish: {figures}"
        if self.converges:
            return f"pre-copy finishes in about {self.passes} more pass(es): {figures}"
        return f"pre-copy would need about {self.passes} more passes: {figures}"


def predict_precopy(stats: MigrationStats, downtime_ms: int) -> Prediction | None:
    """From a sample taken after the first pass: each pass sends what the guest dirtied
    during the one before, so what is left shrinks by dirty ÷ link rate per pass until it
    fits in the pause. None when the sample carries no rates to judge by."""
    link, dirty, left = stats.memory_bps, stats.dirty_rate_bps, stats.memory_remaining
    if link <= 0:
        return None
    fits = link * downtime_ms / 1000
    passes: int | None
    if left <= fits:
        passes = 0
    elif dirty <= 0:
        passes = 1
    elif dirty >= link:
        passes = None
    else:
        passes = max(1, math.ceil(math.log(fits / left) / math.log(dirty / link)))
    return Prediction(passes, dirty, link, left)


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
    if policy.predict and not new.predicted and stats.iteration > 1:
        prediction = predict_precopy(stats, policy.initial_downtime_ms)
        if prediction is not None:
            new = replace(new, predicted=True)
            if prediction.converges:
                actions.append(Action(ActionKind.NOTE, reason=prediction.describe()))
            elif policy.allow_postcopy:
                actions.append(Action(ActionKind.POSTCOPY, reason=prediction.describe()))
                return replace(new, postcopy=True), actions
            else:
                actions.append(Action(ActionKind.NOTE, reason=prediction.describe()
                                      + "; post-copy is not possible: throttling instead"))
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

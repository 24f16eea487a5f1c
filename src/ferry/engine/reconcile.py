"""A job whose server stopped, judged against libvirt on the hosts it touched.

A server that takes a job over (its owner's lease ran out: the server was
killed, or stopped) asks both hosts what they hold, follows a migration
libvirt is still running to its end, and records what it found and what it
did: the VM on the destination only is a success ("completed while ferry was
down"), on the source only a failure; a VM on both (one paused) is resolved
to the one libvirt's migration state says holds it. Then the job's recorded
resources are settled (:mod:`ferry.engine.cleanup`). A host that does not
answer is waited for, never guessed about.

The decisions are pure functions over what the hosts showed (:class:`Seen`);
:class:`Reconciler` does the asking and the acting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from ferry.engine.cleanup import finish_resources
from ferry.engine.jobs import JobHandle
from ferry.errors import FerryError
from ferry.job import Job, JobKind, JobState, Phase
from ferry.model import VM, MigrationSide, PostcopyState, VMState
from ferry.reports import EvacuationReport, Reconciled
from ferry.virt.base import HostConnection


@dataclass(frozen=True)
class Seen:
    """One host's answer about the VM."""

    host: str
    answered: bool
    vm: VM | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        """Running as the VM itself (a migration's incoming copy is not the VM yet)."""
        return (self.vm is not None and self.vm.state is VMState.RUNNING
                and self.vm.migration is not MigrationSide.INCOMING)

    @property
    def paused(self) -> bool:
        return self.vm is not None and self.vm.state is VMState.PAUSED

    @property
    def active(self) -> bool:
        return self.vm is not None and self.vm.state not in (VMState.SHUTOFF, VMState.CRASHED)

    def describe(self) -> str:
        if not self.answered:
            return f"{self.host} does not answer ({self.error})"
        if self.vm is None:
            return f"not on {self.host}"
        side = f", {self.vm.migration.value} migration" if self.vm.migration else ""
        return f"{self.vm.state.value} on {self.host}{side}"


class Outcome(StrEnum):
    WAIT = "wait"  # a host did not answer: ask again
    FOLLOW = "follow"  # libvirt still migrates, or a disk copy still catches up: follow it
    FINISH_COPY = "finish-copy"  # the disk copies caught up: switch the VM to them
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNRESOLVED = "unresolved"  # nothing a rule may decide (runs on both, or nowhere)


class Act(StrEnum):
    DESTROY_SOURCE = "destroy-source"  # the source's paused leftover of a completed move
    DESTROY_DEST = "destroy-dest"  # the destination's incoming copy of a failed move
    RESUME_SOURCE = "resume-source"  # the VM, paused for a switchover that never came
    RESUME_DEST = "resume-dest"  # the VM, only on the destination, left paused
    REPOINT = "repoint"  # the VM's saved definition, pointed at the disks it now runs on


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    acts: tuple[Act, ...] = ()


def judge_live(src: Seen, dst: Seen) -> Decision:
    """A live migration between hosts, judged on both hosts' answers. Pure."""
    if not (src.answered and dst.answered):
        return Decision(Outcome.WAIT)
    postcopy = {s.vm.postcopy for s in (src, dst) if s.vm is not None}
    if PostcopyState.FAILED in postcopy:
        # Each host holds part of the VM's memory: destroying or resuming either side
        # would lose the rest. Only a post-copy resume (the move's own, or the admin's)
        # can end this.
        return Decision(Outcome.UNRESOLVED)
    if src.vm is not None and src.vm.migration is MigrationSide.OUTGOING:
        return Decision(Outcome.FOLLOW)
    if PostcopyState.ACTIVE in postcopy:
        return Decision(Outcome.FOLLOW)
    incoming = dst.vm is not None and dst.vm.migration is MigrationSide.INCOMING
    if dst.running:
        if src.running:
            return Decision(Outcome.UNRESOLVED)
        return Decision(Outcome.SUCCEEDED, (Act.DESTROY_SOURCE,) if src.paused else ())
    if dst.paused and not incoming:
        # Only a completed switchover leaves the VM itself paused on the destination.
        if src.active:
            return Decision(Outcome.UNRESOLVED)
        return Decision(Outcome.SUCCEEDED, (Act.RESUME_DEST,))
    acts = (Act.DESTROY_DEST,) if dst.active else ()
    if src.running:
        return Decision(Outcome.FAILED, acts)
    if src.paused:
        return Decision(Outcome.FAILED, (*acts, Act.RESUME_SOURCE))
    return Decision(Outcome.UNRESOLVED)


def judge_storage(seen: Seen, copying: bool, caught_up: bool, targets: set[str]) -> Decision:
    """A Storage VMotion on one host: QEMU's mirror (``copying``, ``caught_up``: every
    copy ready to switch to), and which files the running VM uses. Pure."""
    if not seen.answered:
        return Decision(Outcome.WAIT)
    if seen.vm is None:
        return Decision(Outcome.UNRESOLVED)
    if copying:
        return Decision(Outcome.FINISH_COPY if caught_up else Outcome.FOLLOW)
    uses = {d.source for d in seen.vm.disks if d.source}
    if uses & targets:
        return Decision(Outcome.SUCCEEDED, (Act.REPOINT,))
    return Decision(Outcome.FAILED)


def judge_cold(src: Seen, dst: Seen, targets: set[str]) -> Decision:
    """A cold migration: where the VM is defined, and on which files. Pure."""
    if not (src.answered and dst.answered):
        return Decision(Outcome.WAIT)
    if src.host == dst.host:
        if src.vm is None:
            return Decision(Outcome.UNRESOLVED)
        uses = {d.source for d in src.vm.disks if d.source}
        return Decision(Outcome.SUCCEEDED if uses & targets or not targets else Outcome.FAILED)
    if dst.vm is not None and src.vm is None:
        return Decision(Outcome.SUCCEEDED)
    if src.vm is not None:
        # Defined on both: the source's definition is the VM's; the destination's is
        # ferry's, recorded before it was made, and is removed with the rest.
        return Decision(Outcome.FAILED)
    return Decision(Outcome.UNRESOLVED)


# How long a host that does not answer is waited for before the job ends unconfirmed.
GIVE_UP_S = 600.0


class Reconciler:
    def __init__(self, conn: Callable[[str], HostConnection],
                 resume_evacuation: Callable[[JobHandle], None],
                 retry_s: float = 2.0, give_up_s: float = GIVE_UP_S) -> None:
        self._conn = conn
        self._resume_evacuation = resume_evacuation
        self._retry_s = retry_s
        self._give_up_s = give_up_s

    def run(self, handle: JobHandle) -> None:
        job = handle.job
        hosts = ", ".join(dict.fromkeys(h for h in (job.source_host, job.dest_host) if h))
        handle.event(Phase.RECONCILE, f"taken over by server {handle.owner}: the server that "
                     f"ran it stopped; judging it against libvirt on {hosts}")
        if job.kind is JobKind.EVACUATE:
            self._resume_evacuation(handle)
            return
        job = handle.stored()  # with the resources it recorded
        decision, found, aborted = self._judge(handle, job)
        job = handle.stored()  # a cancel may have come meanwhile
        notes: list[str] = []
        if decision.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            # Only a decided outcome settles what the job made: undecided, a file may
            # be what the VM runs on, so nothing is touched.
            notes = finish_resources(job.resources, decision.outcome is Outcome.SUCCEEDED,
                                     self._conn, lambda rid, state: handle.resource(rid, state))
        judged = Reconciled(found=found, outcome=decision.outcome.value,
                            actions=tuple(a.value for a in decision.acts), cleanup=tuple(notes))
        before = job.report or job.kind.report_type()
        assert not isinstance(before, EvacuationReport)  # an evacuation is resumed, not judged
        report = replace(before, reconciled=judged)
        where = job.dest_host or job.source_host
        if decision.outcome is Outcome.SUCCEEDED:
            handle.event(Phase.DONE, f"completed while ferry was down: {job.vm} runs on "
                         f"{where} ({found})", cleanup=notes)
            handle.finish(JobState.SUCCEEDED, report)
        elif decision.outcome is Outcome.FAILED:
            cancelled = job.cancel_requested and aborted  # only the user's cancel stopped it
            handle.event(Phase.ROLLBACK, f"did not complete while ferry was down: {job.vm} "
                         f"stays on {job.source_host} ({found})", cleanup=notes)
            handle.finish(JobState.CANCELLED if cancelled else JobState.FAILED, report,
                          f"the move did not complete while its server was down: {found}")
        else:
            handle.event(Phase.ROLLBACK, f"{job.vm}: {found}; no rule decides this, "
                         "nothing was changed: check it with 'ferry vm show'; the files the "
                         "job recorded are listed with it")
            handle.finish(JobState.FAILED, report, f"found {found}: left for an admin")

    def _judge(self, handle: JobHandle, job: Job) -> tuple[Decision, str, bool]:
        """Ask until a rule decides; act on what it says. (decision, what was found,
        whether this server aborted the move because a user cancelled it)."""
        said: set[tuple[Outcome, str]] = set()  # each finding is told once
        aborted = False
        deadline = time.monotonic() + self._give_up_s
        while True:
            decision, found = self._look(job)
            if decision.outcome is Outcome.WAIT and time.monotonic() > deadline:
                # A job is not left running for ever; what is not known is said so.
                return Decision(Outcome.UNRESOLVED), found, aborted
            if decision.outcome in (Outcome.WAIT, Outcome.FOLLOW, Outcome.FINISH_COPY):
                if (decision.outcome, found) not in said:
                    said.add((decision.outcome, found))
                    handle.event(Phase.RECONCILE, {
                        Outcome.WAIT: "waiting for the hosts to answer: ",
                        Outcome.FOLLOW: "libvirt is still copying; following it to its end: ",
                        Outcome.FINISH_COPY: "the disk copies caught up; switching the VM "
                                             "to them: "}[decision.outcome] + found)
                cancel = handle.cancel_requested.is_set() or job.cancel_requested
                storage = job.kind is JobKind.STORAGE_MIGRATE
                if decision.outcome is not Outcome.WAIT and cancel and not aborted:
                    self._abort(job)  # the user's cancel, before the switch: honoured
                    aborted = True
                elif storage and decision.outcome is Outcome.FOLLOW \
                        and time.monotonic() > deadline:
                    self._abort(job)  # a copy that never catches up is given up
                elif decision.outcome is Outcome.FINISH_COPY and not aborted:
                    self._pivot(job)
                    continue
                time.sleep(self._retry_s)
                continue
            for act in decision.acts:
                self._act(job, act)
            if decision.acts:
                handle.event(Phase.RECONCILE, f"found {found}; did: "
                             f"{', '.join(a.value for a in decision.acts)}")
            return decision, found, aborted

    def _look(self, job: Job) -> tuple[Decision, str]:
        src = self._see(job.source_host, job.vm)
        if job.kind is JobKind.STORAGE_MIGRATE:
            copies = self._copies(job) if src.answered and src.vm is not None else {}
            copying, caught_up = bool(copies), all(copies.values())
            return judge_storage(src, copying, caught_up, self._targets(job)), src.describe()
        dest = job.dest_host or job.source_host
        # A move on one host (a cold move between its datastores) asks it once.
        dst = src if dest == job.source_host else self._see(dest, job.vm)
        found = f"{src.describe()}; {dst.describe()}"
        if job.kind is JobKind.COLD_MIGRATE:
            return judge_cold(src, dst, self._targets(job)), found
        return judge_live(src, dst), found

    def _targets(self, job: Job) -> set[str]:
        return {r.path for r in job.resources if r.path and r.kind.created_by_ferry}

    def _see(self, host: str, vm: str) -> Seen:
        try:
            return Seen(host, True, self._conn(host).get_vm(vm))
        except FerryError as err:
            return Seen(host, False, error=err.message)

    def _copies(self, job: Job) -> dict[str, bool]:
        """disk -> whether its block copy caught up (is ready to switch to)."""
        found: dict[str, bool] = {}
        try:
            conn = self._conn(job.source_host)
            for disk in conn.block_jobs(job.vm):
                info = conn.block_job(job.vm, disk)
                if info is not None:
                    found[disk] = info.ready
        except FerryError:
            return found  # the next look asks again
        return found

    def _pivot(self, job: Job) -> None:
        try:
            conn = self._conn(job.source_host)
            for disk in self._copies(job):
                conn.pivot_block_copy(job.vm, disk)
        except FerryError:
            return  # the next look shows which disks switched

    def _abort(self, job: Job) -> None:
        if job.kind is JobKind.STORAGE_MIGRATE:
            self._abort_copies(job)
        else:
            self._try(lambda: self._conn(job.source_host).abort_migration(job.vm))

    def _act(self, job: Job, act: Act) -> None:
        dest = job.dest_host or job.source_host
        if act is Act.REPOINT:
            self._try(lambda: self._repoint(job))
        elif act is Act.DESTROY_SOURCE:
            self._try(lambda: self._conn(job.source_host).destroy_vm(job.vm))
        elif act is Act.DESTROY_DEST:
            self._try(lambda: self._conn(dest).destroy_vm(job.vm))
        elif act is Act.RESUME_SOURCE:
            self._try(lambda: self._conn(job.source_host).resume_vm(job.vm))
        else:
            self._try(lambda: self._conn(dest).resume_vm(job.vm))

    def _repoint(self, job: Job) -> None:
        """The saved definition follows the disks the VM runs on after the switch."""
        conn = self._conn(job.source_host)
        vm = conn.get_vm(job.vm)
        targets = self._targets(job)
        for disk in vm.disks if vm is not None else ():
            if disk.source in targets:
                conn.set_persistent_disk(job.vm, disk.target, disk.source,
                                         disk.driver_format or "raw")

    def _abort_copies(self, job: Job) -> None:
        try:
            conn = self._conn(job.source_host)
            for disk in conn.block_jobs(job.vm):
                conn.cancel_block_copy(job.vm, disk)
        except FerryError:
            return  # the next look shows what the host holds

    @staticmethod
    def _try(call: Callable[[], object]) -> object:
        try:
            return call()
        except FerryError:
            return None  # the next look shows what the host holds

"""Maintenance mode: empty a host by moving every VM off it, each to a host chosen for it.

The host is marked in maintenance first, so nothing is placed or started there
while it empties. Each running VM is live-migrated and each powered-off VM's
registration moved (cold) to the host :mod:`ferry.engine.placement` chooses
among those whose whole pre-flight report passes. The moves go through the
per-host migration slots like any other, so several run at once within the
limits. One VM that cannot move does not stop the others; the report says what
moved where, and what could not move and why.

Cancelling the evacuation places no further VM and withdraws its moves still
waiting for a slot; moves already running finish (each can be cancelled as a
job of its own). The host stays in maintenance.

Each VM is judged from one snapshot (reread once, its host's facts read once),
host by host in placement's order until one passes: no thread per target, and
placing a VM costs a few reports, not one per host of the fleet. An unexpected
error (a bug, a lost database) stops the placing, not the report: the job
still ends, saying which VMs moved and which did not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ferry.checks.finding import Finding, errors
from ferry.engine.jobs import JobHandle
from ferry.engine.placement import (
    Candidate,
    by_preference,
    choose_host,
    free_memory_mib,
    running_mib,
    why_not,
)
from ferry.errors import FerryError
from ferry.job import Job, JobKind, JobState, Phase
from ferry.model import VM, Host, VMState
from ferry.reports import EvacuatedVM, EvacuationProgress, EvacuationReport

log = logging.getLogger(__name__)


Judge = Callable[[str], list[Finding]]
"""One VM's pre-flight report for a destination host, from one snapshot of the facts."""


@dataclass
class Evacuation:
    host: str
    vms: list[VM]  # the VMs on the host when maintenance began
    targets: list[Host]  # hosts a VM may go to: registered, not this one, not in maintenance
    all_vms: list[VM]  # every VM, for the memory already used on each target
    # (VM, cold) -> its report for any target, the VM reread and its host's facts read once
    judge: Callable[[VM, bool], Judge]
    # starts (queues) the move of a VM to a host, given that host's pre-flight findings
    start: Callable[[VM, str, list[Finding]], Job]
    job_of: Callable[[str], Job]
    cancel: Callable[[str], Job]  # cancels a move's job (withdraws it while queued)
    scope: str = "every other host"  # where ``targets`` come from, for the report
    children: list[Job] = field(default_factory=list)  # moves it started before a takeover
    poll_seconds: float = 0.2
    _planned: dict[str, int] = field(default_factory=dict)  # host -> MiB placed there
    _moves: dict[str, dict[str, Any]] = field(default_factory=dict)  # vm -> where, job, state
    _stuck: dict[str, str] = field(default_factory=dict)  # vm -> why it could not move
    _running: dict[str, int] = field(default_factory=dict)  # host -> MiB of its running VMs

    def run(self, job: JobHandle) -> None:
        """Move every VM; always ends the job in a final state with what moved, never raises."""
        started = time.monotonic()
        for child in self.children:
            self._moves[child.vm] = {"host": child.dest_host, "job": child.id,
                                     "state": child.state.value, "error": child.error,
                                     "kind": "cold" if child.kind is JobKind.COLD_MIGRATE
                                     else "live"}
        failure: str | None = None
        try:
            self._running = running_mib(self.all_vms)
            # The biggest running VMs first: they are the hardest to place.
            order = sorted(self.vms,
                           key=lambda vm: (vm.state is VMState.SHUTOFF, -vm.memory_mib))
            for vm in order:
                if job.cancel_requested.is_set():
                    self._stuck[vm.name] = "not moved: the evacuation was cancelled"
                    continue
                self._place(job, vm)
        except Exception as err:  # a bug or a lost database must not hide what moved
            log.exception("evacuation of %s stopped", self.host)
            failure = f"the evacuation stopped: {err!r}"
            for vm in self.vms:
                if vm.name not in self._moves:
                    self._stuck.setdefault(vm.name, f"not moved: {failure}")
        try:
            self._wait(job)  # the moves already started run on; their outcome is reported
        except Exception as err:
            log.exception("evacuation of %s lost sight of its moves", self.host)
            failure = failure or f"the evacuation lost sight of its moves: {err!r}"
        self._finish(job, started, failure)

    def _finish(self, job: JobHandle, started: float, failure: str | None) -> None:
        moved = {name: m["host"] for name, m in self._moves.items() if m["state"] == "succeeded"}
        for name, m in self._moves.items():
            if m["state"] != "succeeded":
                self._stuck[name] = f"its move to {m['host']} {m['state']}: {m.get('error')}"
        report = EvacuationReport(
            host=self.host, moved=moved, not_moved=dict(self._stuck),
            jobs={name: m["job"] for name, m in self._moves.items()},
            total_ms=round((time.monotonic() - started) * 1000), error=failure)
        if failure is not None:
            job.event(Phase.ROLLBACK, f"{failure}; {len(moved)} VM(s) moved off {self.host}, "
                      f"{len(self._stuck)} still there", not_moved=self._stuck)
            job.finish(JobState.FAILED, report,
                       f"{failure}; {len(self._stuck)} VM(s) still on {self.host}")
        elif job.cancel_requested.is_set():
            job.event(Phase.ROLLBACK, f"evacuation cancelled: {len(moved)} VM(s) moved off "
                      f"{self.host}, {len(self._stuck)} still there", not_moved=self._stuck)
            job.finish(JobState.CANCELLED, report,
                       f"cancelled: {len(self._stuck)} VM(s) still on {self.host}")
        elif self._stuck:
            job.event(Phase.DONE, f"{len(moved)} VM(s) moved off {self.host}; "
                      f"{len(self._stuck)} could not move", not_moved=self._stuck)
            job.finish(JobState.FAILED, report,
                       f"{len(self._stuck)} VM(s) still on {self.host}: "
                       + "; ".join(f"{name}: {why}" for name, why in sorted(self._stuck.items())))
        else:
            job.event(Phase.DONE, f"{self.host} is empty: {len(moved)} VM(s) moved")
            job.finish(JobState.SUCCEEDED, report)

    def _place(self, job: JobHandle, vm: VM) -> None:
        cold = vm.state is VMState.SHUTOFF
        try:
            judge = self.judge(vm, cold)
        except FerryError as err:
            self._stuck[vm.name] = f"not judged: {err.message}"
            job.event(Phase.COMPATIBILITY, f"{vm.name} cannot move: {self._stuck[vm.name]}")
            return
        free = {t.name: free_memory_mib(t, self._running, self._planned.get(t.name, 0))
                for t in self.targets}
        order = by_preference(self.targets, free)
        judged: dict[str, list[Finding]] = {}
        candidates: dict[str, Candidate] = {}
        # Host by host in the order placement prefers, until one passes: the first
        # that passes and fits is the one choose_host picks among all of them.
        for target in order:
            if free[target.name] < vm.memory_mib:
                break  # it fits none of the rest either
            candidates[target.name] = self._judged(judge, target.name, free, judged)
            if not candidates[target.name].blocking:
                break
        chosen = choose_host(vm, list(candidates.values()))
        if chosen is None:
            # Nowhere to go: every host judged, so the report says why host by host.
            for target in order:
                if target.name not in candidates:
                    candidates[target.name] = self._judged(judge, target.name, free, judged)
            self._stuck[vm.name] = why_not(vm, list(candidates.values()), self.scope)
            job.event(Phase.COMPATIBILITY, f"{vm.name} cannot move: {self._stuck[vm.name]}")
            return
        try:
            child = self.start(vm, chosen.host, judged[chosen.host])
        except FerryError as err:
            self._stuck[vm.name] = f"{chosen.host} refused it: {err.message}"
            job.event(Phase.COMPATIBILITY, f"{vm.name} cannot move: {self._stuck[vm.name]}")
            return
        if not cold:
            self._planned[chosen.host] = self._planned.get(chosen.host, 0) + vm.memory_mib
        self._moves[vm.name] = {"host": chosen.host, "job": child.id, "state": child.state.value,
                                "kind": "cold" if cold else "live"}
        job.event(Phase.REGISTER, f"{vm.name} -> {chosen.host} ({'cold' if cold else 'live'}, "
                  f"{chosen.free_mib} MiB free there, {len(candidates)} host(s) judged), "
                  f"job {child.id}")

    @staticmethod
    def _judged(judge: Judge, target: str, free: dict[str, int],
                judged: dict[str, list[Finding]]) -> Candidate:
        try:
            findings = judged[target] = judge(target)
        except FerryError as err:
            return Candidate(target, (err.message,), 0)
        blocking = tuple(f"{f.code}: {f.message}" for f in errors(findings))
        return Candidate(target, blocking, free[target])

    def _withdraw_queued(self, job: JobHandle) -> None:
        withdrawn = []
        for vm, move in self._moves.items():
            if move["state"] != JobState.QUEUED.value:
                continue
            try:
                self.cancel(move["job"])
            except FerryError:
                continue  # it has just started: it finishes like the running ones
            withdrawn.append(vm)
        job.event(Phase.ROLLBACK, f"cancel: {len(withdrawn)} queued move(s) withdrawn"
                  f"{' (' + ', '.join(withdrawn) + ')' if withdrawn else ''}; moves already "
                  "running finish")

    def _wait(self, job: JobHandle) -> None:
        withdrawn = False
        while True:
            if job.cancel_requested.is_set() and not withdrawn:
                self._withdraw_queued(job)
                withdrawn = True
            open_moves = 0
            for vm, move in self._moves.items():
                if move["state"] in ("succeeded", "failed", "cancelled"):
                    continue
                child = self.job_of(move["job"])
                if child.state.finished and move["state"] != child.state.value:
                    job.event(Phase.PRECOPY, f"{vm} -> {move['host']}: {child.state.value}")
                move["state"], move["error"] = child.state.value, child.error
                open_moves += not child.state.finished
            job.progress(EvacuationProgress(phase="evacuating", host=self.host, vms={
                vm: EvacuatedVM(host=m["host"], state=m["state"])
                for vm, m in self._moves.items()}, not_moved=dict(self._stuck)))
            if not open_moves:
                return
            time.sleep(self.poll_seconds)

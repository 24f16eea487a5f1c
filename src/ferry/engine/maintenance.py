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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Finding, errors
from ferry.engine.jobs import JobHandle
from ferry.engine.placement import Candidate, choose_host, free_memory_mib, why_not
from ferry.errors import FerryError
from ferry.model import VM, Host, Job, JobState, Phase, VMState


@dataclass
class Evacuation:
    host: str
    vms: list[VM]  # the VMs on the host when maintenance began
    targets: list[Host]  # hosts a VM may go to: registered, not this one, not in maintenance
    all_vms: list[VM]  # every VM, for the memory already used on each target
    check: Callable[[MoveRequest], list[Finding]]
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

    def run(self, job: JobHandle) -> None:
        """Move every VM; always ends the job in a final state, never raises."""
        started = time.monotonic()
        for child in self.children:
            self._moves[child.vm] = {"host": child.dest_host, "job": child.id,
                                     "state": child.state.value, "error": child.error,
                                     "kind": "cold" if child.kind == "cold-migrate" else "live"}
        # The biggest running VMs first: they are the hardest to place.
        order = sorted(self.vms, key=lambda vm: (vm.state is VMState.SHUTOFF, -vm.memory_mib))
        for vm in order:
            if job.cancel_requested.is_set():
                self._stuck[vm.name] = "not moved: the evacuation was cancelled"
                continue
            self._place(job, vm)
        self._wait(job)
        moved = {name: m["host"] for name, m in self._moves.items() if m["state"] == "succeeded"}
        for name, m in self._moves.items():
            if m["state"] != "succeeded":
                self._stuck[name] = f"its move to {m['host']} {m['state']}: {m.get('error')}"
        report = {"host": self.host, "moved": moved, "not_moved": dict(self._stuck),
                  "jobs": {name: m["job"] for name, m in self._moves.items()},
                  "total_ms": round((time.monotonic() - started) * 1000)}
        if job.cancel_requested.is_set():
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
        candidates = []
        judged: dict[str, list[Finding]] = {}
        # Each target judges at once: the source is busy with the moves already
        # running, and placing a VM one host after another left slots idle.
        with ThreadPoolExecutor(max_workers=max(1, len(self.targets))) as pool:
            verdicts = list(pool.map(lambda t: self._judge(vm, t.name, cold), self.targets))
        for target, verdict in zip(self.targets, verdicts, strict=True):
            if isinstance(verdict, FerryError):
                candidates.append(Candidate(target.name, (verdict.message,), 0))
                continue
            findings = judged[target.name] = verdict
            blocking = tuple(f"{f.code}: {f.message}" for f in errors(findings))
            free = free_memory_mib(target, self.all_vms, self._planned.get(target.name, 0))
            candidates.append(Candidate(target.name, blocking, free))
        chosen = choose_host(vm, candidates)
        if chosen is None:
            self._stuck[vm.name] = why_not(vm, candidates, self.scope)
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
                  f"{chosen.free_mib} MiB free there), job {child.id}")

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

    def _judge(self, vm: VM, target: str, cold: bool) -> list[Finding] | FerryError:
        try:
            return self.check(MoveRequest(vm.uuid, dest_host=target, cold=cold))
        except FerryError as err:
            return err

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
            job.progress({"phase": "evacuating", "host": self.host, "vms": {
                vm: {"host": m["host"], "state": m["state"]} for vm, m in self._moves.items()},
                "not_moved": dict(self._stuck)})
            if not open_moves:
                return
            time.sleep(self.poll_seconds)

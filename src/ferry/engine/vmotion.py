"""Runs one live migration between hosts through its phases, and proves the outcome.

libvirt's peer-to-peer migration does the seed's steps 4 to 10 inside one
call; ferry watches it from outside: lifecycle events give the moments the
destination was registered, the source paused (switchover), the destination
resumed and the source unregistered; job statistics give the copy's progress,
fed to the convergence policy. Afterwards ferry checks where the VM really
runs instead of trusting the return code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from ferry.engine.confirm import (
    Confirmer,
    Reach,
    Sighting,
    describe,
    seen_dict,
    settle,
    sight,
    unanswered,
)
from ferry.engine.diskplan import TargetFiles
from ferry.engine.jobs import JobHandle
from ferry.engine.policy import ActionKind, ConvergencePolicy, Tracking, decide
from ferry.engine.recovery import PostcopyRecovery
from ferry.engine.revive import GuestCheck, HeartbeatListener
from ferry.engine.trace import trace_of
from ferry.errors import FerryError, MigrationCancelled, MigrationError
from ferry.job import JobState, Phase
from ferry.model import PostcopyState
from ferry.reports import GuestCheckReport, LiveProgress, LiveReport, WarningNote
from ferry.virt.base import HostConnection, MigrationOptions, MigrationStats


class HeartbeatSource(HeartbeatListener, Protocol):
    """The lab's heartbeat collector, as the engine needs it (times are time.monotonic())."""

    def largest_gap(self, vm: str, since: float, until: float | None = None) -> Any: ...


Unsubscribe = Callable[[], None]
LifecycleSubscribe = Callable[[Callable[[str, str, str], None]], Unsubscribe]


@dataclass
class VMotion:
    vm: str
    source: HostConnection
    dest: HostConnection
    options: MigrationOptions
    policy: ConvergencePolicy
    subscribe_lifecycle: LifecycleSubscribe
    heartbeat: HeartbeatSource | None = None
    warnings: list[dict[str, object]] = field(default_factory=list)
    # Shared-nothing: the disks copied with the memory into files on the destination.
    files: TargetFiles | None = None
    sample_seconds: float = 0.5
    # Where the hosts are asked afterwards (reopened connections), and who confirms
    # later what a host that did not answer holds.
    reach: Reach | None = None
    confirmer: Confirmer | None = None
    # Why post-copy is not safe for this move (None: it is; the policy then does not use
    # it unless it takes the risk), and how long a post-copy whose link failed waits
    # for it to return.
    postcopy_blocked: str | None = None
    recovery_wait_s: float = 300.0
    bandwidth_why: str = "no limit"  # whose limit options.bandwidth_mibps is
    _phases: dict[Phase, float] = field(default_factory=dict)
    _unregistered: threading.Event = field(default_factory=threading.Event)
    _ended_mono: float = 0.0
    _aborted_on_cancel: bool = False  # ferry aborted the copy because a user cancelled
    _postcopy_asked: bool = False  # the policy switched the move to post-copy

    def run(self, job: JobHandle) -> None:
        """Migrate; always ends the job in a final state, never raises."""
        started_mono = time.monotonic()
        started = time.time()
        unsubscribe = self.subscribe_lifecycle(self._lifecycle(job))
        outcome: list[BaseException] = []
        samples: list[MigrationStats] = []
        actions: list[str] = []
        ended_mono: float | None = None
        stranded: MigrationError | None = None
        if self.postcopy_blocked is not None and self.policy.allow_postcopy:
            actions.append(f"post-copy at risk: {self.postcopy_blocked}")
            job.event(Phase(job.job.phase), f"policy {self.policy.name}: post-copy is used as "
                      f"asked, at a risk: {self.postcopy_blocked}")
        elif self.postcopy_blocked is not None:
            actions.append(f"post-copy not used: {self.postcopy_blocked}")
            job.event(Phase(job.job.phase), f"policy {self.policy.name}: post-copy is not "
                      f"used for this move ({self.postcopy_blocked}); it throttles instead")
        if self.options.bandwidth_mibps:
            actions.append(f"bandwidth limited to {self.options.bandwidth_mibps} MiB/s "
                           f"({self.bandwidth_why})")
            job.event(Phase(job.job.phase), f"migration bandwidth limited to "
                      f"{self.options.bandwidth_mibps} MiB/s ({self.bandwidth_why})",
                      bandwidth_mibps=self.options.bandwidth_mibps)
        try:
            try:
                self.source.set_max_downtime(self.vm, self.policy.initial_downtime_ms)
            except FerryError as err:
                actions.append(f"could not set initial max downtime: {err.message}")
            worker = threading.Thread(target=self._migrate, args=(job, outcome), daemon=True,
                                      name=f"migrate-{self.vm}")
            job.on_cancel(lambda: self._abort(job, samples))
            if job.cancel_requested.is_set():
                raise MigrationCancelled(f"migration of {self.vm} was cancelled before it began")
            if self.files is not None:
                self.files.create(job)
                self.options = replace(self.options, copy_disks=tuple(
                    m.as_copy() for m in self.files.moves))
            worker.start()
            self._watch(job, worker, samples, actions)
            if outcome and self._in_postcopy():
                stranded = self._recover(job, outcome, samples)
            ended_mono = time.monotonic()
            if not outcome:
                # libvirt delivers the source's last event asynchronously, often
                # just after the migration call has returned; _completed() asks
                # both hosts anyway, so this only keeps the event's own time.
                self._unregistered.wait(0.5)
        except FerryError as err:
            outcome.append(err)
        finally:
            job.on_cancel(None)
            unsubscribe()
        if ended_mono is None:
            ended_mono = time.monotonic()
        self._ended_mono = ended_mono
        report = self._report(started, started_mono, ended_mono, samples, actions,
                              succeeded=not outcome)
        if stranded is not None:
            # Neither host holds the whole VM: nothing is rolled back or removed.
            job.event(Phase(job.job.phase), stranded.message)
            job.finish(JobState.FAILED, replace(report, outcome=stranded.message),
                       stranded.message)
        elif outcome:
            self._rolled_back(job, outcome[0], report)
        else:
            self._completed(job, report)

    # -- the libvirt call, in its own thread ------------------------------
    def _migrate(self, job: JobHandle, outcome: list[BaseException]) -> None:
        try:
            self.source.migrate(self.vm, self.options, on_iteration=self._iteration(job))
        except BaseException as err:  # handed to the job thread, which reports it
            outcome.append(err)

    def _in_postcopy(self) -> bool:
        """Whether the failed move had entered post-copy: then only a resume saves it."""
        try:
            return self.source.postcopy_state(self.vm) is not PostcopyState.NONE
        except FerryError:
            # The source does not say: if post-copy was asked, it may have begun, and
            # a rollback could destroy the only copy of pages the source lacks.
            return self._postcopy_asked

    def _recover(self, job: JobHandle, outcome: list[BaseException],
                 samples: list[MigrationStats]) -> MigrationError | None:
        """Resume the interrupted post-copy; None when it then completed (``outcome``
        emptied), else the error that says where the VM's memory is."""
        cause = outcome[0].message if isinstance(outcome[0], FerryError) else repr(outcome[0])
        left = samples[-1].memory_remaining if samples else None
        recovery = PostcopyRecovery(self.vm, self.source, self.dest.name, self.options,
                                    self.recovery_wait_s, risk=self.postcopy_blocked)
        try:
            recovery.run(job, cause, left)
        except MigrationError as err:
            return err
        outcome.clear()
        return None

    def _abort(self, job: JobHandle, samples: list[MigrationStats]) -> None:
        try:
            # The last figure of what was sent: libvirt keeps none once the copy is aborted.
            last = self.source.migration_stats(self.vm)
            if last is not None:
                samples.append(last)
        except FerryError:
            pass  # the report then rests on the samples taken so far
        try:
            self.source.abort_migration(self.vm)
            self._aborted_on_cancel = True
        except FerryError as err:
            job.event(Phase(job.job.phase), f"cancel could not abort the copy: {err.message}")

    def _iteration(self, job: JobHandle) -> Callable[[int], None]:
        def on_iteration(number: int) -> None:
            if Phase.SWITCHOVER in self._phases:
                # QEMU counts one more pass as post-copy begins; the job is past pre-copy
                # (and past the point where a cancel could return the VM).
                return
            job.event(Phase.PRECOPY, f"pre-copy iteration {number}", iteration=number)

        return on_iteration

    def _lifecycle(self, job: JobHandle) -> Callable[[str, str, str], None]:
        source, dest = self.source.name, self.dest.name
        moments = {
            (dest, "started"): (Phase.REGISTER, f"registered on {dest}: QEMU waits for the state"),
            (source, "suspended"): (Phase.SWITCHOVER,
                                    f"paused on {source} for the final copy (switchover)"),
            (dest, "resumed"): (Phase.RESUMED, f"running on {dest}"),
            (source, "undefined"): (Phase.UNREGISTER, f"unregistered from {source}"),
            (source, "migrated-away"): (Phase.UNREGISTER,
                                        f"stopped on {source} and unregistered there"),
        }

        def on_event(host: str, vm: str, event: str) -> None:
            moment = moments.get((host, event))
            if vm != self.vm or moment is None or moment[0] in self._phases:
                return
            phase, message = moment
            self._phases[phase] = time.time()
            job.event(phase, message, at=self._phases[phase])
            if phase is Phase.UNREGISTER:
                self._unregistered.set()
            if phase is Phase.SWITCHOVER:
                # Past the switchover libvirt cannot abort without risking the VM.
                job.on_cancel(None)

        return on_event

    def _watch(self, job: JobHandle, worker: threading.Thread,
               samples: list[MigrationStats], actions: list[str]) -> None:
        tracking = Tracking()
        while worker.is_alive():
            worker.join(self.sample_seconds)
            if not worker.is_alive():
                break
            try:
                stats = self.source.migration_stats(self.vm)
            except FerryError:
                continue  # the job may be finishing; the worker reports real failures
            if stats is None:
                continue
            samples.append(stats)
            job.progress(replace(progress_view(job.job.phase, stats), trace=trace_of(samples)))
            tracking, todo = decide(self.policy, tracking, stats)
            for action in todo:
                actions.append(action.describe())
                job.event(Phase(job.job.phase), f"policy {self.policy.name}: {action.describe()}")
                try:
                    if action.kind is ActionKind.SET_DOWNTIME:
                        self.source.set_max_downtime(self.vm, action.value)
                    elif action.kind is ActionKind.POSTCOPY:
                        self._postcopy_asked = True
                        self.source.start_postcopy(self.vm)
                    elif action.kind is ActionKind.ABORT:
                        self.source.abort_migration(self.vm)
                except FerryError as err:
                    actions.append(f"{action.kind.value} failed: {err.message}")

    # -- outcome -----------------------------------------------------------
    def _report(self, started: float, started_mono: float, ended_mono: float,
                samples: list[MigrationStats], actions: list[str],
                succeeded: bool) -> LiveReport:
        final: MigrationStats | None = None
        if succeeded:
            # Only a successful migration has completed statistics, on the destination.
            try:
                final = self.dest.completed_migration_stats(self.vm)
            except FerryError:
                final = None
        sent, basis = data_sent(final, samples, self.dest.name)
        report = LiveReport(
            policy=self.policy.name,
            policy_actions=tuple(actions),
            warnings=tuple(warning_note(w) for w in self.warnings),
            total_ms=round((ended_mono - started_mono) * 1000),
            downtime_ms=final.downtime_ms if final else None,
            data_bytes=sent,
            data_bytes_basis=basis,
            memory_total=max((s.memory_total for s in (final, *samples) if s), default=0)
            or None,
            iterations=max((s.iteration for s in samples), default=0)
            if not final else max(final.iteration, max((s.iteration for s in samples), default=0)),
            setup_ms=final.setup_ms if final else None,
            max_dirty_rate_bps=max((s.dirty_rate_bps for s in samples), default=0),
            max_throttle_pct=max((s.throttle_pct for s in samples), default=0),
            shared_storage_proven=self.options.shared_storage_proven,
            encrypted=self.options.tls,
            started_at=started,
            trace=trace_of(samples),
        )
        if Phase.RESUMED in self._phases:
            # When the VM ran again on the destination; "total" also counts the
            # source's teardown, which the VM does not wait for.
            report = replace(report, running_on_dest_ms=round(
                (self._phases[Phase.RESUMED] - started) * 1000))
        if self.heartbeat is not None:
            gap = self.heartbeat.largest_gap(self.vm, started_mono, ended_mono)
            if gap is not None:
                report = replace(report, heartbeat_gap_ms=round(gap.gap_ms, 1),
                                 heartbeat_lost=gap.lost)
        return report

    def _completed(self, job: JobHandle, report: LiveReport) -> None:
        src, dst = self._sight(self.source.name), self._sight(self.dest.name)
        if src.answered and not src.running and dst.running:
            self._succeeded(job, report)
            return
        detail = describe(self.vm, src, dst)
        job.event(Phase.DONE, f"libvirt reported success, but {detail}",
                  source=seen_dict(src), dest=seen_dict(dst))
        missing = unanswered(src, dst)
        report = replace(report, outcome=detail, unconfirmed=missing)
        job.finish(JobState.FAILED, report,
                   f"after migration the VM is not confirmed running on {self.dest.name} alone: "
                   f"{detail}")
        if missing and self.confirmer is not None:
            self.confirmer.later(job, self.vm, self.source.name, self.dest.name,
                                 apply_rule=False)

    def _succeeded(self, job: JobHandle, report: LiveReport) -> None:
        for phase, message in ((Phase.RESUMED, f"running on {self.dest.name}"),
                               (Phase.UNREGISTER, f"unregistered from {self.source.name}")):
            if phase not in self._phases:
                job.event(phase, message + " (seen after the migration call returned)")
        if self.files is not None:
            try:
                self.files.reserve_thick()
                self.files.settle(job, succeeded=True)
                self.files.delete_sources(job)
            except FerryError as err:
                # The VM is safe on the destination; only space is not yet freed.
                report = replace(report, cleanup_error=err.message)
                job.event(Phase.UNREGISTER, f"the VM runs on its new files, but its old files "
                          f"could not all be deleted: {err.message}")
            report = replace(report, disks=self.files.report())
        job.event(Phase.DONE, f"{self.vm} runs on {self.dest.name}")
        job.finish(JobState.SUCCEEDED, report)

    def _rolled_back(self, job: JobHandle, err: BaseException, report: LiveReport) -> None:
        # Cancelled only when the cancel is what stopped it: a late cancel never relabels
        # a real failure (nor a policy's abort) as the user's.
        # libvirt reports an aborted copy as "cancelled" or as the broken stream it left.
        cancelled = job.cancel_requested.is_set() and (
            isinstance(err, MigrationCancelled) or self._aborted_on_cancel)
        message = err.message if isinstance(err, FerryError) else repr(err)
        # A host that does not answer is stated as such, never counted as "absent".
        src, dst, done = settle(self._reach, self.vm, self.source.name, self.dest.name)
        if self.files is not None and not dst.answered and self.confirmer is not None:
            # Its new files may be deleted only once it shows nothing uses them, and a
            # supervised libvirtd comes back: wait for it as long as the clean-up retries.
            job.event(Phase.ROLLBACK, f"{self.dest.name} did not answer: waiting up to "
                      f"{self.files.retry_s:.0f} s for it, to delete the files created there")
            if self.confirmer.wait_for(self.dest.name, self.files.retry_s):
                src, dst, more = settle(self._reach, self.vm, self.source.name, self.dest.name)
                done += more
        left: list[str] = []
        if self.files is not None and dst.answered and dst.state is None:
            left = self.files.discard(job)
            self.files.settle(job, succeeded=False)
            report = replace(report, disks=self.files.report())
        detail = describe(self.vm, src, dst) + "".join(f"; {d}" for d in done)
        if left:
            detail += f" (files left: {', '.join(left)})"
        elif self.files is not None and not dst.answered:
            detail += f" (the new files on {self.dest.name} are kept until it answers)"
        missing = unanswered(src, dst)
        job.event(Phase.ROLLBACK, detail, on_source=src.running if src.answered else None,
                  on_dest=dst.present if dst.answered else None, unconfirmed=list(missing))
        report = replace(report, rollback=detail, unconfirmed=missing)
        if src.answered and src.running:
            report = replace(report, guest_after_rollback=self._check_guest(job))
        if cancelled:
            job.finish(JobState.CANCELLED, report, f"cancelled: {message}")
        else:
            job.finish(JobState.FAILED, report, str(MigrationError(
                f"migration of {self.vm} from {self.source.name} to {self.dest.name} failed: "
                f"{message}")))
        if missing and self.confirmer is not None:
            # A source that did not answer (its libvirtd restarting cancels the move) may
            # hold a guest whose timer QEMU lost too: checked once it is seen running.
            self.confirmer.later(
                job, self.vm, self.source.name, self.dest.name, apply_rule=True,
                on_source=None if src.answered else lambda: self._check_guest_later(job))

    def _reach(self, host: str) -> HostConnection:
        """The host's current connection: the move's own may have died with its libvirtd."""
        if self.reach is not None:
            return self.reach(host)
        return self.source if host == self.source.name else self.dest

    def _check_guest(self, job: JobHandle) -> GuestCheckReport | None:
        """The VM stayed on the source: prove its guest runs, repair a lost timer interrupt."""
        source = self._reach(self.source.name)
        found = GuestCheck(source, self.vm, self.heartbeat).run(self._ended_mono)
        if found is None:
            return None
        message, facts = found
        job.event(Phase.ROLLBACK, message, **asdict(facts))
        return facts

    def _check_guest_later(self, job: JobHandle) -> None:
        """As :meth:`_check_guest`, once a finished job's source answers again."""
        found = GuestCheck(self._reach(self.source.name), self.vm,
                           self.heartbeat).run(time.monotonic())
        if found is None:
            return
        message, facts = found
        job.event(Phase.ROLLBACK, message, **asdict(facts))
        job.amend_report(guest_after_rollback=facts)

    def _sight(self, host: str) -> Sighting:
        return sight(self._reach, host, self.vm)


def data_sent(final: MigrationStats | None, samples: list[MigrationStats],
              dest: str) -> tuple[int | None, str]:
    """Bytes the migration really sent, and what the figure rests on.

    A successful migration's completed statistics count everything. A failed or
    cancelled one has none: libvirt 9.0 keeps no completed statistics of it on
    either host (``jobStats(COMPLETED | KEEP_COMPLETED)`` answers type "none"
    on the source after an abort), and for a moment after the abort its
    current statistics read type "cancelled" with every counter 0, which is
    what reports of "0 B sent" came from. So the figure is the largest any
    sample showed (the counters only grow; a cancel takes one last sample just
    before it aborts), and unknown (None) when no sample showed any, never 0.
    """
    if final is not None and (final.data_processed or final.memory_processed):
        return final.data_processed or final.memory_processed, (
            f"libvirt's statistics of the completed migration on {dest}")
    counted = [(s.data_processed or s.memory_processed, s.elapsed_ms) for s in samples]
    counted = [c for c in counted if c[0] > 0]
    if not counted:
        return None, "unknown: no sample of the copy was taken before it ended"
    most, at_ms = max(counted)
    return most, (f"at least: the last sample, {at_ms / 1000:.1f} s into the copy (libvirt "
                  "keeps no statistics of a migration that did not complete)")


def progress_view(phase: str, stats: MigrationStats) -> LiveProgress:
    return LiveProgress(
        phase=phase,
        elapsed_ms=stats.elapsed_ms,
        memory_total=stats.memory_total,
        memory_processed=stats.memory_processed,
        memory_remaining=stats.memory_remaining,
        data_processed=stats.data_processed,
        iteration=stats.iteration,
        dirty_rate_bps=stats.dirty_rate_bps,
        memory_bps=stats.memory_bps,
        throttle_pct=stats.throttle_pct,
        disk_total=stats.disk_total,
        disk_processed=stats.disk_processed,
        disk_remaining=stats.disk_remaining,
    )


def warning_note(finding: Mapping[str, object]) -> WarningNote:
    """A pre-flight warning as the move's spec keeps it (:func:`finding_dict`), for the
    report."""
    objects = finding.get("objects")
    return WarningNote(
        code=str(finding.get("code", "")), status=str(finding.get("status", "warning")),
        message=str(finding.get("message", "")), remedy=str(finding.get("remedy", "")),
        objects={str(k): str(v) for k, v in objects.items()} if isinstance(objects, dict)
        else {})

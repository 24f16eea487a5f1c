"""Live storage migration on one host: the seed's Storage VMotion, on libvirt block copy.

Seed steps, as ferry runs them:
1. the VM's files are created on the target datastore (volumes of its pool);
2-5. each disk is mirrored by QEMU (libvirt ``blockCopy``): a background copy,
   with QEMU's dirty bitmap as the changed-block tracking, until the copy has
   caught up ("ready");
then the VM switches to the copies (pivot), its persistent definition is
pointed at them, and only when the running VM is seen using the new files
6. the source files are deleted.

A failure or cancel before the pivot leaves the source disks authoritative
and removes every target file ferry created.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from ferry.engine.diskplan import DiskMove, TargetFiles, plan_moves
from ferry.engine.jobs import JobHandle
from ferry.engine.vmotion import HeartbeatSource
from ferry.errors import FerryError, MigrationCancelled, MigrationError
from ferry.job import JobState, Phase
from ferry.model import VM, Pool
from ferry.reports import CopyProgress, DiskProgress, StorageReport
from ferry.virt.base import HostConnection


@dataclass
class StorageVMotion:
    vm: VM
    conn: HostConnection
    target_pool: str
    pools: list[Pool]  # the host's pools, to find which volume a source file is
    disk_format: str = "same"
    disks: tuple[str, ...] = ()  # targets to move; empty: every data disk
    heartbeat: HeartbeatSource | None = None  # the lab's: how the guest fared meanwhile
    sync_after_s: float = 60.0  # then copy in synchronous-write mode so it must converge
    # The copy is ready the moment QEMU says so; every poll between costs the move
    # time, so poll often (a cheap query) and write progress less often.
    sample_seconds: float = 0.1
    progress_seconds: float = 0.5
    _moves: list[DiskMove] = field(default_factory=list)
    _files: TargetFiles | None = None

    def run(self, job: JobHandle) -> None:
        """Move the disks; always ends the job in a final state, never raises."""
        started = time.monotonic()
        self._moves = plan_moves(self.vm, self.pools, self.disk_format, self.disks)
        self._files = TargetFiles(self.vm.name, self._moves, self.conn, self.conn,
                                  self.target_pool)
        try:
            if not self._moves:
                raise MigrationError(f"VM {self.vm.name} has no data disk to move")
            self._files.create(job)
            self._mirror(job)
            self._pivot(job)
            self._repoint(job)
            self._files.settle(job, succeeded=True)
            self._files.delete_sources(job)
        except FerryError as err:
            self._roll_back(job, err, started)
            return
        job.event(Phase.DONE, f"{self.vm.name} runs on datastore {self.target_pool}")
        job.finish(JobState.SUCCEEDED, self._report(started))

    # -- steps -----------------------------------------------------------
    def _mirror(self, job: JobHandle) -> None:
        for move in self._moves:
            self.conn.block_copy(self.vm.name, move.disk.target, move.target_path, move.fmt,
                                 synchronous=False)
        job.event(Phase.PRECOPY, "mirroring: background copy, changed blocks tracked by QEMU")
        started = time.monotonic()
        reported = 0.0
        last: dict[str, tuple[float, int]] = {}  # disk -> (when, bytes) at the last report
        while True:
            if job.cancel_requested.is_set():
                raise MigrationCancelled(f"storage migration of {self.vm.name} cancelled")
            ready = True
            disks: dict[str, DiskProgress] = {}
            for move in self._moves:
                info = self.conn.block_job(self.vm.name, move.disk.target)
                if info is None:
                    raise MigrationError(f"the copy of disk {move.disk.target} stopped")
                move.copied = info.cur
                ready = ready and info.ready
                disks[move.disk.target] = DiskProgress(
                    copied=info.cur, total=info.end, remaining=max(0, info.end - info.cur),
                    mode="synchronous" if move.synchronous else "background")
            if ready:
                job.progress(CopyProgress(phase=Phase.PRECOPY.value, disks=disks))
                return
            now = time.monotonic()
            if now - reported >= self.progress_seconds:
                reported = now
                for disk, view in disks.items():
                    when, copied = last.get(disk, (started, 0))
                    disks[disk] = replace(view, rate_bps=round(
                        (view.copied - copied) / max(now - when, 1e-3)))
                    last[disk] = (now, view.copied)
                job.progress(CopyProgress(phase=Phase.PRECOPY.value, disks=disks))
            if time.monotonic() - started > self.sync_after_s:
                self._go_synchronous(job)
                started = time.monotonic()
            time.sleep(self.sample_seconds)

    def _go_synchronous(self, job: JobHandle) -> None:
        """The guest writes faster than the background copy: mirror its writes as they happen."""
        for move in self._moves:
            info = self.conn.block_job(self.vm.name, move.disk.target)
            if move.synchronous or (info is not None and info.ready):
                continue
            self.conn.cancel_block_copy(self.vm.name, move.disk.target)
            self.conn.block_copy(self.vm.name, move.disk.target, move.target_path, move.fmt,
                                 synchronous=True)
            move.synchronous = True
            job.event(Phase.PRECOPY, f"disk {move.disk.target}: background copy did not catch "
                      "up; copying again with synchronous writes")

    def _pivot(self, job: JobHandle) -> None:
        for move in self._moves:
            self.conn.pivot_block_copy(self.vm.name, move.disk.target)
            move.pivoted = True
        job.event(Phase.SWITCHOVER, f"{self.vm.name} switched to the copies")

    def _repoint(self, job: JobHandle) -> None:
        running = self.conn.get_vm(self.vm.name)
        using = {d.target: d.source for d in running.disks} if running else {}
        for move in self._moves:
            if using.get(move.disk.target) != move.target_path:
                raise MigrationError(f"after the pivot disk {move.disk.target} of "
                                     f"{self.vm.name} is not on {move.target_path}")
            self.conn.set_persistent_disk(self.vm.name, move.disk.target, move.target_path,
                                          move.fmt)
        if self._files is not None:
            self._files.reserve_thick()
        job.event(Phase.RESUMED, f"{self.vm.name} runs on the new files, and its definition "
                  "points at them")

    # -- outcome ---------------------------------------------------------
    def _roll_back(self, job: JobHandle, err: FerryError, started: float) -> None:
        for move in self._moves:
            if move.pivoted:
                continue  # the VM uses this copy now: it stays, and so does its source
            try:
                if self.conn.block_job(self.vm.name, move.disk.target) is not None:
                    self.conn.cancel_block_copy(self.vm.name, move.disk.target)
            except FerryError:
                pass  # no job left to cancel
        left = self._files.discard(job) if self._files else []
        if self._files is not None:
            self._files.settle(job, succeeded=False)
        job.event(Phase.ROLLBACK, f"{self.vm.name} keeps running on its source disks; "
                  f"{'nothing left' if not left else 'left: ' + ', '.join(left)} on "
                  f"{self.target_pool}")
        state = JobState.CANCELLED if isinstance(err, MigrationCancelled) else JobState.FAILED
        job.finish(state, self._report(started), err.message)

    def _report(self, started: float) -> StorageReport:
        gap = self.heartbeat.largest_gap(self.vm.name, started) if self.heartbeat else None
        return StorageReport(total_ms=round((time.monotonic() - started) * 1000),
                             heartbeat_gap_ms=round(gap.gap_ms, 1) if gap is not None else None,
                             heartbeat_lost=gap.lost if gap is not None else None,
                             disks=self._files.report() if self._files else {},
                             datastore=self.target_pool)

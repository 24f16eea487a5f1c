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
from dataclasses import dataclass, field
from typing import Any

from ferry.checks.storage import pool_holding
from ferry.engine.jobs import JobHandle
from ferry.errors import FerryError, MigrationCancelled, MigrationError
from ferry.model import VM, Disk, JobState, Phase, Pool
from ferry.virt.base import HostConnection

# format name -> (file format, preallocated)
TARGET_FORMATS = {"thin": ("qcow2", False), "thick-lazy": ("raw", True)}
SUPPORTED_FORMATS = ("same", *TARGET_FORMATS)


@dataclass
class DiskMove:
    disk: Disk
    source_pool: Pool | None
    target_volume: str
    fmt: str
    preallocate: bool
    capacity: int = 0
    target_path: str = ""
    created: bool = False
    pivoted: bool = False
    synchronous: bool = False
    copied: int = 0


@dataclass
class StorageVMotion:
    vm: VM
    conn: HostConnection
    target_pool: str
    pools: list[Pool]  # the host's pools, to find which volume a source file is
    disk_format: str = "same"
    disks: tuple[str, ...] = ()  # targets to move; empty: every file disk
    sync_after_s: float = 60.0  # then copy in synchronous-write mode so it must converge
    sample_seconds: float = 0.5
    _moves: list[DiskMove] = field(default_factory=list)

    def plan(self) -> list[DiskMove]:
        chosen = [d for d in self.vm.disks
                  if d.device == "disk" and d.source_type == "file" and d.source
                  and not d.readonly and (not self.disks or d.target in self.disks)]
        moves = []
        for disk in chosen:
            if self.disk_format == "same":
                fmt, prealloc = disk.driver_format or "raw", False
            else:
                fmt, prealloc = TARGET_FORMATS[self.disk_format]
            ext = "qcow2" if fmt == "qcow2" else "img"
            moves.append(DiskMove(disk, pool_holding(self.pools, disk.source or ""),
                                  f"{self.vm.name}-{disk.target}.{ext}", fmt, prealloc))
        return moves

    def run(self, job: JobHandle) -> None:
        """Move the disks; always ends the job in a final state, never raises."""
        started = time.monotonic()
        self._moves = self.plan()
        try:
            if not self._moves:
                raise MigrationError(f"VM {self.vm.name} has no file disk to move")
            self._create_targets(job)
            self._mirror(job)
            self._pivot(job)
            self._repoint(job)
            self._delete_sources(job)
        except FerryError as err:
            self._roll_back(job, err, started)
            return
        job.event(Phase.DONE, f"{self.vm.name} runs on datastore {self.target_pool}")
        job.finish(JobState.SUCCEEDED, self._report(started))

    # -- steps -----------------------------------------------------------
    def _create_targets(self, job: JobHandle) -> None:
        for move in self._moves:
            source = move.disk.source or ""
            move.capacity = self.conn.volume_size(source)[0]
            move.target_path = self.conn.create_volume(
                self.target_pool, move.target_volume, move.capacity, move.fmt, move.preallocate)
            move.created = True
        job.event(Phase.REGISTER, f"created {len(self._moves)} file(s) for {self.vm.name} on "
                  f"datastore {self.target_pool}",
                  files=[m.target_path for m in self._moves])

    def _mirror(self, job: JobHandle) -> None:
        for move in self._moves:
            self.conn.block_copy(self.vm.name, move.disk.target, move.target_path, move.fmt,
                                 synchronous=False)
        job.event(Phase.PRECOPY, "mirroring: background copy, changed blocks tracked by QEMU")
        started = time.monotonic()
        while True:
            if job.cancel_requested.is_set():
                raise MigrationCancelled(f"storage migration of {self.vm.name} cancelled")
            ready = True
            progress: dict[str, Any] = {"phase": Phase.PRECOPY.value, "disks": {}}
            for move in self._moves:
                info = self.conn.block_job(self.vm.name, move.disk.target)
                if info is None:
                    raise MigrationError(f"the copy of disk {move.disk.target} stopped")
                move.copied = info.cur
                ready = ready and info.ready
                progress["disks"][move.disk.target] = {
                    "copied": info.cur, "total": info.end, "remaining": max(0, info.end - info.cur),
                    "mode": "synchronous" if move.synchronous else "background"}
            job.progress(progress)
            if ready:
                return
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
        job.event(Phase.RESUMED, f"{self.vm.name} runs on the new files, and its definition "
                  "points at them")

    def _delete_sources(self, job: JobHandle) -> None:
        deleted, kept = [], []
        for move in self._moves:
            source = move.disk.source or ""
            if move.source_pool is None:
                kept.append(source)  # not in a datastore: not ferry's to delete
                continue
            self.conn.delete_volume(move.source_pool.name, source.rsplit("/", 1)[-1])
            deleted.append(source)
        job.event(Phase.UNREGISTER, f"deleted {len(deleted)} source file(s)",
                  deleted=deleted, kept=kept)

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
            if move.created:
                try:
                    self.conn.delete_volume(self.target_pool, move.target_volume)
                    move.created = False
                except FerryError as cleanup:
                    job.event(Phase.ROLLBACK, f"could not delete {move.target_path}: "
                              f"{cleanup.message}")
        left = [m.target_path for m in self._moves if m.created and not m.pivoted]
        job.event(Phase.ROLLBACK, f"{self.vm.name} keeps running on its source disks; "
                  f"{'nothing left' if not left else 'left: ' + ', '.join(left)} on "
                  f"{self.target_pool}")
        state = JobState.CANCELLED if isinstance(err, MigrationCancelled) else JobState.FAILED
        job.finish(state, self._report(started), err.message)

    def _report(self, started: float) -> dict[str, Any]:
        disks = {}
        for move in self._moves:
            allocation = None
            if move.created and move.target_path:
                try:
                    allocation = self.conn.volume_size(move.target_path)[1]
                except FerryError:
                    allocation = None
            disks[move.disk.target] = {
                "source": move.disk.source, "target": move.target_path, "format": move.fmt,
                "capacity": move.capacity, "copied": move.copied,
                "target_allocation": allocation,
                "mode": "synchronous" if move.synchronous else "background"}
        return {"total_ms": round((time.monotonic() - started) * 1000), "disks": disks,
                "datastore": self.target_pool}

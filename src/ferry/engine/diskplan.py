"""The files a disk move creates on the target datastore, and the ones it frees.

Every kind of move that copies disks (Storage VMotion, shared-nothing, cold)
plans the same way: one target volume per moved disk, named after the VM and
the disk, in the format asked for; the target files are created before any
copy starts, deleted again if the move fails, and the source files are
deleted only once the VM is proved to use the targets. A source that is no
file of a datastore (a block device, a LUN) is never deleted: it is not
ferry's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ferry.checks.storage import pool_holding
from ferry.engine.jobs import JobHandle
from ferry.errors import FerryError, MigrationError, NotFound
from ferry.job import Phase, ResourceKind, ResourceState
from ferry.model import DISK_FORMATS, TARGET_FORMATS, VM, Disk, Pool
from ferry.reports import DiskReport
from ferry.virt.base import DiskCopy, HostConnection

SUPPORTED_FORMATS = DISK_FORMATS
assert set(SUPPORTED_FORMATS) == {"same", *TARGET_FORMATS}


@dataclass
class DiskMove:
    disk: Disk
    source_pool: Pool | None  # None: not a file of a datastore (never deleted by ferry)
    target_volume: str
    fmt: str
    preallocation: str | None
    capacity: int = 0
    target_path: str = ""
    created: bool = False
    pivoted: bool = False
    synchronous: bool = False
    copied: int = 0
    resource: int | None = None  # the job's record of the target file
    source_resource: int | None = None  # the job's record of the source file it frees

    def as_copy(self) -> DiskCopy:
        return DiskCopy(self.disk.target, self.target_path, self.fmt)


def copies_data(disk: Disk) -> bool:
    """A disk whose data a move copies: a writable file, or a virtual-mode block device."""
    return (disk.device == "disk" and disk.source is not None and not disk.readonly
            and disk.source_type in ("file", "block"))


def plan_moves(vm: VM, source_pools: list[Pool], disk_format: str,
               disks: tuple[str, ...] = ()) -> list[DiskMove]:
    """One move per disk to copy: the ones named in ``disks``, else every data disk."""
    moves = []
    for disk in vm.disks:
        if not copies_data(disk) or (disks and disk.target not in disks):
            continue
        if disk_format == "same":
            # A block device has no file format: its copy is a plain raw file.
            fmt = disk.driver_format if disk.source_type == "file" else "raw"
            fmt, prealloc = fmt or "raw", None
        else:
            fmt, prealloc = TARGET_FORMATS[disk_format]
        ext = "qcow2" if fmt == "qcow2" else "img"
        source_pool = (pool_holding(source_pools, disk.source or "")
                       if disk.source_type == "file" else None)
        moves.append(DiskMove(disk, source_pool, f"{vm.name}-{disk.target}.{ext}", fmt, prealloc))
    return moves


@dataclass
class TargetFiles:
    """The moved disks' files: created on ``target``'s pool, sources on ``source``."""

    vm: str
    moves: list[DiskMove]
    source: HostConnection
    target: HostConnection
    pool: str
    # How to reach the target host again if its connection died during the move.
    reopen_target: Callable[[], HostConnection] | None = None
    retry_s: float = 90.0
    deleted_sources: list[str] = field(default_factory=list)

    def create(self, job: JobHandle) -> None:
        for move in self.moves:
            move.capacity = self.source.disk_size(self.vm, move.disk.target)[0]
            self.record(job, move)
            assert move.resource is not None
            try:
                move.target_path = self.target.create_volume(
                    self.pool, move.target_volume, move.capacity, move.fmt,
                    move.preallocation)
            except FerryError:
                job.resource(move.resource, ResourceState.REMOVED)  # not made: none of ours
                raise
            move.created = True
            job.resource(move.resource, ResourceState.CREATED, move.target_path)
        job.event(Phase.REGISTER, f"created {len(self.moves)} file(s) for {self.vm} on "
                  f"datastore {self.pool} of {self.target.name}",
                  files=[m.target_path for m in self.moves])

    def record(self, job: JobHandle, move: DiskMove) -> None:
        """Intent before action: the target file about to be made, and the source file the
        move frees once the VM runs on it, recorded in the job before the host is asked.

        A file of that name already there is someone else's: refused before it is
        recorded, so no clean-up (by this server or one that takes the job over) can
        take it for ferry's.
        """
        if self.target.find_volume(self.pool, move.target_volume) is not None:
            raise MigrationError(f"datastore {self.pool} of {self.target.name} already has a "
                                 f"file named {move.target_volume}: it is not ferry's to "
                                 "replace; move or rename it first")
        move.resource = job.intend(self.target.name, ResourceKind.VOLUME, move.target_volume,
                                   self.pool)
        if move.source_pool is not None and move.disk.source:
            move.source_resource = job.intend(
                self.source.name, ResourceKind.SOURCE_VOLUME,
                move.disk.source.rsplit("/", 1)[-1], move.source_pool.name, move.disk.source)

    def settle(self, job: JobHandle, succeeded: bool) -> None:
        """The move ended: its records say what became of each file."""
        for move in self.moves:
            if move.resource is not None and (succeeded or move.pivoted) and move.created:
                job.resource(move.resource, ResourceState.ADOPTED)
            if move.source_resource is not None and not succeeded:
                job.resource(move.source_resource, ResourceState.KEPT)

    def discard(self, job: JobHandle) -> list[str]:
        """Delete every target file ferry created that the VM does not use; what is left.

        When the target host's libvirtd is gone (it crashed mid-copy), keep trying
        through a new connection for ``retry_s``: a supervised libvirtd comes back.
        """
        deadline = time.monotonic() + self.retry_s
        while True:
            failure = None
            for move in self.moves:
                if move.pivoted:
                    continue  # a pivoted copy is what the VM runs on: it stays
                if not move.created:
                    if move.resource is not None:
                        job.resource(move.resource, ResourceState.REMOVED)  # never made
                    continue
                try:
                    self.target.delete_volume(self.pool, move.target_volume)
                    move.created = False
                except NotFound:
                    move.created = False  # already gone: nothing of ferry's is left
                except FerryError as err:
                    failure = err
                if not move.created and move.resource is not None:
                    job.resource(move.resource, ResourceState.REMOVED)
            if failure is None or self.reopen_target is None or time.monotonic() > deadline:
                break
            time.sleep(2.0)
            try:
                self.target = self.reopen_target()
            except FerryError as err:
                failure = err
        left = [m.target_path for m in self.moves if m.created and not m.pivoted]
        if left and failure is not None:
            job.event(Phase.ROLLBACK, f"could not delete {', '.join(left)} on "
                      f"{self.target.name}: {failure.message}")
        return left

    def reserve_thick(self) -> None:
        """QEMU's mirror gives back a target's zero areas (libvirt lets it unmap), also
        into a preallocated file: once the VM uses a thick copy, reserve them again."""
        for move in self.moves:
            if move.preallocation is not None and move.created:
                self.target.reserve_volume(move.target_path)

    def delete_sources(self, job: JobHandle) -> None:
        """The VM is proved to run on the targets: free the source files."""
        kept = []
        for move in self.moves:
            source = move.disk.source or ""
            if move.source_pool is None:
                kept.append(source)
                continue
            self.source.delete_volume(move.source_pool.name, source.rsplit("/", 1)[-1])
            self.deleted_sources.append(source)
            if move.source_resource is not None:
                job.resource(move.source_resource, ResourceState.REMOVED)
        job.event(Phase.UNREGISTER, f"deleted {len(self.deleted_sources)} source file(s) on "
                  f"{self.source.name}", deleted=self.deleted_sources, kept=kept)

    def report(self) -> dict[str, DiskReport]:
        disks: dict[str, DiskReport] = {}
        for move in self.moves:
            allocation = None
            if move.created and move.target_path:
                try:
                    allocation = self.target.volume_size(move.target_path)[1]
                except FerryError:
                    allocation = None
            disks[move.disk.target] = DiskReport(
                source=move.disk.source, target=move.target_path, format=move.fmt,
                capacity=move.capacity, copied=move.copied, target_allocation=allocation,
                mode="synchronous" if move.synchronous else "background")
        return disks

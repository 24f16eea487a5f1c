"""Cold migration: a powered-off VM's files copied, verified, then its registration moved.

The seed's Migration Wizard, for a powered-off VM: change host, change
datastore, or both. ferry runs it as:

1. the target files are created on the target datastore;
2. each disk is copied. A file keeping its format has its bytes streamed
   through ferry, from the source host's libvirt to the target's (holes stay
   holes), and is verified: the SHA-256 of what was sent must equal the
   SHA-256 of the target read back. A disk changing format is converted by a
   host's libvirt (``qemu-img convert`` with explicit formats): qcow2 to raw on
   the source host into a staging file that is then streamed and verified;
   raw to qcow2 on the target host from a verified staging copy;
3. the VM is defined with the new paths on the destination (on the same host
   its definition is replaced), then undefined on the source;
4. the source files are deleted.

A failure before step 3 deletes every file ferry created; the VM stays
defined where it was, on its own files. With no target datastore, only the
registration moves (the disks are on datastores both hosts see).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from ferry.engine.diskplan import DiskMove, TargetFiles
from ferry.engine.jobs import JobHandle
from ferry.engine.preflight import read_image
from ferry.errors import FerryError, MigrationCancelled, MigrationError, NotFound
from ferry.job import JobState, Phase, ResourceKind, ResourceState
from ferry.model import VM, VMState
from ferry.reports import ColdReport, CopyProgress, DiskProgress
from ferry.virt.base import HostConnection

_ZEROS = bytes(2**20)


class Digest:
    """SHA-256 of a volume's bytes as a stream gives them: holes count as their zeros."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes | int) -> None:
        if isinstance(chunk, int):
            left = chunk
            while left > 0:
                piece = min(left, len(_ZEROS))
                self._sha.update(_ZEROS[:piece])
                left -= piece
            self.size += chunk
        else:
            self._sha.update(chunk)
            self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _dense(chunks: Iterable[bytes | int]) -> Iterator[bytes | int]:
    for chunk in chunks:
        if isinstance(chunk, bytes):
            yield chunk
            continue
        left = chunk
        while left > 0:
            piece = min(left, len(_ZEROS))
            yield _ZEROS[:piece]
            left -= piece


def digest_of(chunks: Iterable[bytes | int]) -> Digest:
    digest = Digest()
    for chunk in chunks:
        digest.update(chunk)
    return digest


def transport_of(uris: Iterable[str]) -> str:
    """How a cold move's bytes cross: through ferry's own connection to each libvirtd,
    never a QEMU migration stream, so encrypted as those connections are."""
    schemes = sorted({urlsplit(u).scheme.partition("+")[2].upper() or "local" for u in uris})
    return f"streamed through ferry's connections to libvirt ({' and '.join(schemes)})"


@dataclass
class ColdMigration:
    vm: VM
    source: HostConnection
    dest: HostConnection  # the same connection when only the datastore changes
    files: TargetFiles | None  # None: only the registration moves
    transport: str | None = None  # how ferry reaches the hosts, for the report
    _staged: list[tuple[HostConnection, str, str, int]] = field(default_factory=list)
    _verified: dict[str, str] = field(default_factory=dict)

    def run(self, job: JobHandle) -> None:
        """Move the VM; always ends the job in a final state, never raises."""
        started = time.monotonic()
        registered = False
        try:
            self._check_powered_off()
            if self.files is not None:
                for move in self.files.moves:
                    self._cancel_point(job)
                    self._copy(job, move)
                job.event(Phase.VERIFY, f"{len(self._verified)} file(s) verified",
                          sha256=self._verified)
            self._cancel_point(job)
            self._check_powered_off()  # started meanwhile: its copies are already stale
            self._register(job)
            registered = True
            if self.files is not None:
                self.files.settle(job, succeeded=True)
                self.files.delete_sources(job)
        except FerryError as err:
            if registered:
                # The VM is defined on its new files; only old files were not freed.
                job.event(Phase.DONE, f"{self.vm.name} moved, but: {err.message}")
                job.finish(JobState.SUCCEEDED, replace(self._report(started),
                                                       cleanup_error=err.message))
                return
            self._roll_back(job, err, started)
            return
        finally:
            self._drop_staging(job)
        where = self.dest.name + (f", datastore {self.files.pool}" if self.files else "")
        job.event(Phase.DONE, f"{self.vm.name} is defined on {where}")
        job.finish(JobState.SUCCEEDED, self._report(started))

    # -- steps -------------------------------------------------------------
    def _check_powered_off(self) -> None:
        current = self.source.get_vm(self.vm.name)
        if current is None:
            raise MigrationError(f"VM {self.vm.name} is no longer on {self.source.name}")
        if current.state is not VMState.SHUTOFF:
            raise MigrationError(f"VM {self.vm.name} was started ({current.state.value}) "
                                 "before its cold migration began: move it live instead")

    def _cancel_point(self, job: JobHandle) -> None:
        if job.cancel_requested.is_set():
            raise MigrationCancelled(f"cold migration of {self.vm.name} cancelled")

    def _copy(self, job: JobHandle, move: DiskMove) -> None:
        assert self.files is not None
        disk, source_pool = move.disk, move.source_pool
        if disk.source_type != "file" or source_pool is None:
            raise MigrationError(
                f"disk {disk.target} of VM {self.vm.name} ({disk.source}) is not a file of a "
                "datastore: a powered-off VM's block device cannot be copied by ferry; start "
                "the VM and move it live, or leave the disk out with --disk")
        source_path = disk.source or ""
        source_fmt = disk.driver_format or "raw"
        self._check_single_image(move, source_path, source_fmt)
        self.files.record(job, move)
        move.capacity = self.source.disk_size(self.vm.name, disk.target)[0]
        pool, target = self.files.pool, self.dest
        same_host = self.source.name == self.dest.name
        if source_fmt == move.fmt:
            # The file's own bytes; for qcow2 the target is a plain container of its size.
            size = (self.source.volume_file_size(source_path) if move.fmt == "qcow2"
                    else move.capacity)
            self._create(move, size, "raw" if move.fmt == "qcow2" else move.fmt)
            self._stream(job, move, self.source, source_path, move.target_path)
        elif move.fmt == "raw":
            staging = self._stage(job, self.source, source_pool.name, move, lambda name: (
                self.source.clone_volume(source_path, source_fmt, source_pool.name, name,
                                         "raw")))
            self._create(move, move.capacity, "raw")
            self._stream(job, move, self.source, staging, move.target_path)
        elif same_host:
            move.target_path = target.clone_volume(source_path, source_fmt, pool,
                                                   move.target_volume, move.fmt,
                                                   move.preallocation)
            move.created = True
            self._check_capacity(move)
        else:
            staging = self._stage(job, target, pool, move, lambda name: (
                target.create_volume(pool, name, move.capacity, "raw")))
            self._stream(job, move, self.source, source_path, staging)
            move.target_path = target.clone_volume(staging, "raw", pool, move.target_volume,
                                                   move.fmt, move.preallocation)
            move.created = True
            self._check_capacity(move)
        move.copied = move.capacity
        assert move.resource is not None
        job.resource(move.resource, ResourceState.CREATED, move.target_path)
        job.event(Phase.COPY, f"disk {disk.target}: {source_path} ({source_fmt}) -> "
                  f"{move.target_path} ({move.fmt}) on {target.name}")

    def _check_single_image(self, move: DiskMove, path: str, fmt: str) -> None:
        """The pre-flight refused chains; the image is read again now, as it is copied,
        so that no file behind it can reach the copy (it may have changed since)."""
        image = read_image(self.source.image_info, path, fmt)
        disk = f"disk {move.disk.target} of VM {self.vm.name} ({path})"
        if image.read_as is None:
            raise MigrationError(f"{disk} is on no datastore of {self.source.name}: ferry "
                                 "copies files of its datastores only")
        if image.backing:
            raise MigrationError(f"{disk} has backing file {image.backing[0]}: ferry copies "
                                 "single images only; merge the chain first")
        if image.stopped:
            raise MigrationError(f"{disk} cannot be read as declared: {image.stopped}")
        if move.fmt != fmt and image.read_as != fmt:
            # libvirt converts a file in the format it guesses from its bytes; a copy in
            # the declared format is byte for byte and needs no guess.
            raise MigrationError(
                f"{disk} is declared {fmt} but its bytes read as {image.read_as}: ferry "
                f"converts an image only as its declared format; move it in its own "
                "format (--format same)")

    def _create(self, move: DiskMove, size: int, fmt: str) -> None:
        assert self.files is not None
        move.target_path = self.dest.create_volume(self.files.pool, move.target_volume, size,
                                                   fmt, move.preallocation)
        move.created = True

    def _stage(self, job: JobHandle, conn: HostConnection, pool: str, move: DiskMove,
               make: Callable[[str], str]) -> str:
        """A raw staging file for a conversion, deleted when the move ends either way."""
        name = f"{move.target_volume}.ferry-staging"
        record = job.intend(conn.name, ResourceKind.STAGING, name, pool)
        self._staged.append((conn, pool, name, record))
        path = make(name)
        job.resource(record, ResourceState.CREATED, path)
        return path

    def _stream(self, job: JobHandle, move: DiskMove, source: HostConnection,
                source_path: str, target_path: str) -> None:
        """Copy one volume's bytes across hosts, then read the target back to verify."""
        sent = Digest()

        def counted(chunks: Iterator[bytes | int]) -> Iterator[bytes | int]:
            last = 0.0
            for chunk in chunks:
                sent.update(chunk)
                if job.cancel_requested.is_set():
                    raise MigrationCancelled(f"cold migration of {self.vm.name} cancelled")
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    job.progress(CopyProgress(phase=Phase.COPY.value, disks={
                        move.disk.target: DiskProgress(
                            copied=sent.size, total=move.capacity,
                            remaining=max(0, move.capacity - sent.size))}))
                yield chunk

        reading = source.read_volume(source_path)
        chunks: Iterator[bytes | int] = reading
        if move.preallocation is not None and target_path == move.target_path:
            # libvirt deallocates the target under a hole it is sent; a thick file must
            # stay allocated, so its holes cross as zeros.
            chunks = _dense(chunks)
        try:
            self.dest.write_volume(target_path, counted(chunks))
        finally:
            reading.close()  # a cancelled or failed copy aborts the source's stream now
        back = digest_of(self.dest.read_volume(target_path))
        if (back.hexdigest(), back.size) != (sent.hexdigest(), sent.size):
            raise MigrationError(
                f"disk {move.disk.target} of VM {self.vm.name}: the copy on {self.dest.name} "
                f"({target_path}, {back.size} bytes) does not match what was sent "
                f"({sent.size} bytes)")
        self._verified[move.disk.target] = sent.hexdigest()

    def _check_capacity(self, move: DiskMove) -> None:
        capacity = self.dest.volume_size(move.target_path)[0]
        if capacity != move.capacity:
            raise MigrationError(f"disk {move.disk.target} of VM {self.vm.name}: the converted "
                                 f"file holds {capacity} bytes, the disk {move.capacity}")

    def _register(self, job: JobHandle) -> None:
        moved = {m.disk.target: (m.target_path, m.fmt)
                 for m in (self.files.moves if self.files else [])}
        xml = self.source.saved_definition(self.vm.name, moved)
        if self.dest.name == self.source.name:
            self.dest.define_vm(xml)  # the VM's own definition, pointed at its new files
        else:
            record = job.intend(self.dest.name, ResourceKind.DEFINITION, self.vm.name)
            self.dest.define_vm(xml)
            job.resource(record, ResourceState.CREATED)
            try:
                self.source.undefine_vm(self.vm.name)
            except FerryError:
                self.dest.undefine_vm(self.vm.name)  # one definition, on the source
                job.resource(record, ResourceState.REMOVED)
                raise
            job.resource(record, ResourceState.ADOPTED)
        job.event(Phase.REGISTER, f"{self.vm.name} defined on {self.dest.name} with its new "
                  f"files" if moved else f"{self.vm.name} defined on {self.dest.name}")
        if self.dest.name != self.source.name:
            job.event(Phase.UNREGISTER, f"{self.vm.name} undefined on {self.source.name}")

    # -- outcome -----------------------------------------------------------
    def _drop_staging(self, job: JobHandle) -> None:
        for conn, pool, name, record in self._staged:
            try:
                try:
                    conn.delete_volume(pool, name)
                except NotFound:
                    pass  # never made (its creation failed): nothing to delete
                job.resource(record, ResourceState.REMOVED)
            except FerryError as err:
                job.event(Phase.ROLLBACK, f"could not delete staging file {name} on "
                          f"{conn.name}: {err.message}")
        self._staged.clear()

    def _roll_back(self, job: JobHandle, err: FerryError, started: float) -> None:
        left = self.files.discard(job) if self.files else []
        if self.files is not None:
            self.files.settle(job, succeeded=False)
        job.event(Phase.ROLLBACK, f"{self.vm.name} stays defined on {self.source.name} with its "
                  f"own files; {'nothing left' if not left else 'left: ' + ', '.join(left)} "
                  f"on {self.dest.name}")
        state = JobState.CANCELLED if isinstance(err, MigrationCancelled) else JobState.FAILED
        job.finish(state, self._report(started), err.message)

    def _report(self, started: float) -> ColdReport:
        return ColdReport(total_ms=round((time.monotonic() - started) * 1000),
                          disks=self.files.report() if self.files else {},
                          datastore=self.files.pool if self.files else None,
                          verified_sha256=dict(self._verified), transport=self.transport)

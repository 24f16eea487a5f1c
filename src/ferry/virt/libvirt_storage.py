"""A host's storage through libvirt: volumes, their streams, block copies, images.

Part of the libvirt seam (see :mod:`ferry.virt.libvirt_calls`): the calls of
:class:`~ferry.virt.base.HostConnection` that read or write datastores, mixed
into :class:`ferry.virt.libvirt_host.LibvirtHost`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any
from xml.sax.saxutils import escape

import libvirt

from ferry.errors import NotFound, VirtError
from ferry.virt import domxml
from ferry.virt.base import ImageInfo
from ferry.virt.libvirt_calls import LibvirtCalls

STREAM_CHUNK = 4 * 2**20  # bytes asked of a volume stream at a time


class StorageCalls(LibvirtCalls):
    """Datastores (libvirt storage pools) and the disks of VMs on one host."""

    def _pool(self, name: str) -> Any:
        return self._call(f"datastore {name}", lambda: self._conn.storagePoolLookupByName(name))

    def refresh_pool(self, pool: str) -> None:
        handle = self._pool(pool)
        self._call(f"refresh datastore {pool}", lambda: handle.refresh(0))

    def create_volume(self, pool: str, name: str, capacity: int, fmt: str,
                      preallocation: str | None = None) -> str:
        handle = self._pool(pool)
        # libvirt reserves (fallocate) a raw file when allocation equals capacity.
        allocation = int(capacity) if preallocation else 0
        xml = (
            f"<volume><name>{escape(name)}</name><capacity unit='B'>{int(capacity)}</capacity>"
            f"<allocation unit='B'>{allocation}</allocation>"
            f"<target><format type='{escape(fmt)}'/></target></volume>"
        )
        # No wipe for "full": libvirt zeroes a volume's allocation from offset 0, and
        # a filesystem counts its extent blocks in that allocation, so the file can
        # grow past the disk's size. The copy writes every block instead.
        vol = self._call(f"create volume {name} in {pool}", lambda: handle.createXML(xml, 0))
        return str(vol.path())

    def find_volume(self, pool: str, name: str) -> str | None:
        handle = self._pool(pool)
        self._call(f"refresh datastore {pool}", lambda: handle.refresh(0))
        try:
            vol = self._call(f"volume {name}", lambda: handle.storageVolLookupByName(name))
        except NotFound:
            return None
        return str(vol.path())

    def list_volumes(self, pool: str) -> list[str]:
        handle = self._pool(pool)
        self._call(f"refresh datastore {pool}", lambda: handle.refresh(0))
        names = self._call(f"volumes of datastore {pool}", handle.listVolumes)
        return [str(name) for name in names]

    def delete_volume(self, pool: str, name: str) -> None:
        handle = self._pool(pool)
        vol = self._call(f"volume {name}", lambda: handle.storageVolLookupByName(name))
        self._call(f"delete volume {name}", lambda: vol.delete(0))

    def volume_size(self, path: str) -> tuple[int, int]:
        vol = self._volume(path)
        info = self._call(f"volume {path}", vol.info)
        return int(info[1]), int(info[2])

    def _volume(self, path: str) -> Any:
        return self._call(f"volume {path}", lambda: self._conn.storageVolLookupByPath(path))

    def reserve_volume(self, path: str) -> None:
        vol = self._volume(path)
        capacity = int(self._call(f"volume {path}", vol.info)[1])
        # Resizing to the same size with ALLOCATE fallocates the holes, data untouched.
        self._call(f"reserve the space of {path}", partial(
            vol.resize, capacity, libvirt.VIR_STORAGE_VOL_RESIZE_ALLOCATE))

    def volume_file_size(self, path: str) -> int:
        vol = self._volume(path)
        info = self._call(f"volume {path}", partial(
            vol.infoFlags, libvirt.VIR_STORAGE_VOL_GET_PHYSICAL))
        return int(info[2])

    def image_info(self, path: str) -> ImageInfo | None:
        try:
            vol = self._volume(path)
        except NotFound:
            # A file made outside libvirt shows only after its pool is refreshed.
            for pool in self._call("list pools", lambda: self._conn.listAllStoragePools(
                    libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)):
                folder = domxml.pool_path(self._call("pool definition", partial(pool.XMLDesc, 0)))
                if folder and path.startswith(folder.rstrip("/") + "/"):
                    self._call(f"refresh datastore {pool.name()}", partial(pool.refresh, 0))
            try:
                vol = self._volume(path)
            except NotFound:
                return None
        return domxml.parse_volume(self._call(f"volume {path}", partial(vol.XMLDesc, 0)))

    def clone_volume(self, source_path: str, source_format: str, pool: str, name: str,
                     fmt: str, preallocation: str | None = None) -> str:
        image = self.image_info(source_path)
        if image is None:
            raise VirtError(f"host {self.name}: {source_path} is on no datastore")
        # libvirt converts in the format it reads the bytes as, following any backing
        # file it finds: convert only what it reads as the definition declares.
        if image.read_as != source_format:
            raise VirtError(f"host {self.name}: {source_path} is declared {source_format} "
                            f"but its bytes read as {image.read_as}; ferry converts an image "
                            "only in its declared format")
        if image.backing is not None:
            raise VirtError(f"host {self.name}: {source_path} has a backing file "
                            f"({image.backing}); ferry converts single images only")
        source = self._volume(source_path)
        handle = self._pool(pool)
        capacity = int(self._call(f"volume {source_path}", source.info)[1])
        allocation = capacity if preallocation else 0
        xml = (f"<volume><name>{escape(name)}</name><capacity unit='B'>{capacity}</capacity>"
               f"<allocation unit='B'>{allocation}</allocation>"
               f"<target><format type='{escape(fmt)}'/></target></volume>")
        # For a dir pool libvirt runs 'qemu-img convert -f SRC -O DST' when the formats
        # differ, and a sparse-aware copy when both are raw.
        vol = self._call(f"copy {source_path} to {name} in {pool}",
                         lambda: handle.createXMLFrom(xml, source, 0))
        return str(vol.path())

    @contextmanager
    def _volume_stream(self, path: str, start: Callable[[Any], Any], what: str) -> Iterator[Any]:
        """A stream on the volume at ``path``, finished on success and aborted otherwise."""
        stream = self._call("open a stream", lambda: self._conn.newStream(0))
        self._call(f"{what} {path}", lambda: start(stream))
        done = False
        try:
            yield stream
            self._call(f"{what} {path}", stream.finish)
            done = True
        finally:
            if not done:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass  # the stream already failed

    def read_volume(self, path: str) -> Generator[bytes | int, None, None]:
        vol = self._volume(path)
        what = "read volume"
        with self._volume_stream(path, lambda stream: vol.download(
                stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM), what) as stream:
            while True:
                got = self._call(f"{what} {path}", partial(
                    stream.recvFlags, STREAM_CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE))
                if got == -3:  # a hole: its length, not its zeros, crosses the wire
                    yield int(self._call(f"{what} {path}", stream.recvHole))
                    continue
                if isinstance(got, int):
                    raise VirtError(f"host {self.name}: reading {path} failed ({got})")
                if not got:
                    break
                yield got

    def write_volume(self, path: str, chunks: Iterable[bytes | int]) -> None:
        vol = self._volume(path)
        what = "write volume"
        with self._volume_stream(path, lambda stream: vol.upload(
                stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM), what) as stream:
            for chunk in chunks:
                if isinstance(chunk, int):
                    self._call(f"{what} {path}", partial(stream.sendHole, chunk, 0))
                    continue
                left = chunk
                while left:
                    sent = self._call(f"{what} {path}", partial(stream.send, left))
                    left = left[sent:]

    def disk_size(self, name: str, disk: str) -> tuple[int, int]:
        dom = self._domain(name)
        # blockInfo reads a powered-off VM's files too, and covers block devices.
        info = self._call(f"disk {disk} of {name}", partial(dom.blockInfo, disk, 0))
        return int(info[0]), int(info[1])

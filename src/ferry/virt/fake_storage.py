"""The fake host's datastores: volumes as sparse in-memory files, and their streams.

A volume is a :class:`FakeFile`: its size and the blocks that hold data (the
rest are holes). A fake qcow2 file is one header block (a magic and the
disk's capacity) followed by the disk's blocks, so the fake reads a file's
format from its bytes as libvirt does, and a stream of a qcow2 file carries
the container, not the disk. Mixed into :class:`ferry.virt.fake.FakeHost`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field

from ferry.errors import FerryError, NotFound, VirtError
from ferry.model import VM, Pool
from ferry.virt.base import ImageInfo

BLOCK = 64 * 2**10
QCOW2_MAGIC = b"QFI\xfb"


@dataclass
class FakeFile:
    """A file's bytes: blocks of data by index; a missing block is a hole."""

    size: int = 0
    blocks: dict[int, bytes] = field(default_factory=dict)
    reserved: bool = False  # every byte allocated on the host (thick)

    @property
    def read_as(self) -> str:
        return "qcow2" if self.blocks.get(0, b"").startswith(QCOW2_MAGIC) else "raw"

    @property
    def allocation(self) -> int:
        return self.size if self.reserved else min(self.size, len(self.blocks) * BLOCK)

    def chunks(self) -> Iterator[bytes | int]:
        """The bytes as a sparse stream gives them: data as bytes, holes as their length."""
        hole = 0
        for index in range(-(-self.size // BLOCK)):
            length = min(BLOCK, self.size - index * BLOCK)
            data = self.blocks.get(index)
            if data is None and not self.reserved:
                hole += length
                continue
            if hole:
                yield hole
                hole = 0
            yield (data or bytes(length))[:length]
        if hole:
            yield hole

    def write(self, chunks: Iterable[bytes | int]) -> None:
        """Overwrite from the start; a file only grows, as an upload into it does."""
        offset = 0
        for chunk in chunks:
            if isinstance(chunk, int):
                self._zero(offset, chunk)
                offset += chunk
            else:
                self._put(offset, chunk)
                offset += len(chunk)
            self.size = max(self.size, offset)

    def _put(self, offset: int, data: bytes) -> None:
        while data:
            index, start = divmod(offset, BLOCK)
            piece = data[:BLOCK - start]
            block = bytearray(self.blocks.get(index, bytes(BLOCK)))
            block[start:start + len(piece)] = piece
            if any(block):
                self.blocks[index] = bytes(block)
            else:
                self.blocks.pop(index, None)
            offset += len(piece)
            data = data[len(piece):]

    def _zero(self, offset: int, length: int) -> None:
        end = offset + length
        while offset < end:
            index, start = divmod(offset, BLOCK)
            piece = min(BLOCK - start, end - offset)
            if piece == BLOCK:
                self.blocks.pop(index, None)
            else:
                self._put(offset, bytes(piece))
            offset += piece


def disk_of(file: FakeFile, fmt: str | None = None) -> FakeFile:
    """The disk a guest sees in ``file`` read as ``fmt`` (None: as its bytes look, as
    libvirt's storage guesses): the file itself, or a qcow2 file's contents."""
    if (fmt or file.read_as) != "qcow2":
        return file
    capacity = int.from_bytes(file.blocks[0][len(QCOW2_MAGIC):len(QCOW2_MAGIC) + 8], "big")
    return FakeFile(capacity, {i - 1: b for i, b in file.blocks.items() if i > 0}, file.reserved)


def image_file(disk: FakeFile, fmt: str, reserved: bool) -> FakeFile:
    """A file holding ``disk`` in format ``fmt`` (raw or qcow2)."""
    if fmt != "qcow2":
        return FakeFile(disk.size, dict(disk.blocks), reserved)
    header = (QCOW2_MAGIC + disk.size.to_bytes(8, "big")).ljust(BLOCK, b"\0")
    used = max(disk.blocks) + 1 if disk.blocks else 0
    return FakeFile(BLOCK * (1 + used), {0: header, **{i + 1: b for i, b in disk.blocks.items()}},
                    reserved)


class Backing:
    """Where a pool's files live; pools sharing one Backing are the same storage."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.volumes: dict[str, FakeFile] = {name: FakeFile() for name in names}

    @property
    def files(self) -> set[str]:
        return set(self.volumes)


class FakeFaults:
    """Failures a test plants: the next call of a method by that name raises the error."""

    faults: dict[str, FerryError]

    def _fault(self, call: str) -> None:
        error = self.faults.pop(call, None)
        if error is not None:
            raise error


class FakeStorage(FakeFaults):
    """Volumes of the fake host's pools (the :class:`~ferry.virt.seam.volumes.Volumes` calls)."""

    name: str
    vms: dict[str, VM]
    pools: dict[str, tuple[Pool, Backing]]
    images: dict[str, ImageInfo]
    disk_bytes: tuple[int, int]

    def _backing(self, pool: str) -> Backing:
        if pool not in self.pools:
            raise NotFound(f"host {self.name}: no datastore {pool}")
        return self.pools[pool][1]

    def _place(self, path: str) -> tuple[Backing, str] | None:
        """The backing and volume name that hold ``path``; None: no volume of a pool."""
        for pool, backing in self.pools.values():
            folder, _, name = path.rpartition("/")
            if pool.path and folder == pool.path.rstrip("/") and name in backing.volumes:
                return backing, name
        return None

    def _volume(self, path: str) -> FakeFile:
        place = self._place(path)
        if place is None:
            raise NotFound(f"host {self.name}: no volume {path}")
        backing, name = place
        return backing.volumes[name]

    def refresh_pool(self, pool: str) -> None:
        self._backing(pool)

    def create_volume(self, pool: str, name: str, capacity: int, fmt: str,
                      preallocation: str | None = None) -> str:
        self._fault("create_volume")
        backing = self._backing(pool)
        if name in backing.volumes:
            raise VirtError(f"host {self.name}: volume {name} already exists in {pool}")
        backing.volumes[name] = image_file(FakeFile(capacity), fmt, preallocation is not None)
        return f"{self.pools[pool][0].path}/{name}"

    def list_volumes(self, pool: str) -> list[str]:
        return sorted(self._backing(pool).volumes)

    def find_volume(self, pool: str, name: str) -> str | None:
        if name in self._backing(pool).volumes:
            return f"{self.pools[pool][0].path}/{name}"
        return None

    def delete_volume(self, pool: str, name: str) -> None:
        self._fault("delete_volume")
        if self._backing(pool).volumes.pop(name, None) is None:
            raise NotFound(f"host {self.name}: no volume {name} in {pool}")

    def image_info(self, path: str) -> ImageInfo | None:
        if path in self.images:
            return self.images[path]
        place = self._place(path)
        if place is not None:
            return ImageInfo(path, self._volume(path).read_as)
        if any(pool.path and path.startswith(pool.path.rstrip("/") + "/")
               for pool, _ in self.pools.values()):
            # A file a test names in a pool without creating it: read as its name says.
            return ImageInfo(path, "qcow2" if path.endswith(".qcow2") else "raw")
        return None

    def volume_size(self, path: str) -> tuple[int, int]:
        file = self._volume(path)
        return disk_of(file).size, file.allocation

    def volume_file_size(self, path: str) -> int:
        return self._volume(path).size

    def disk_size(self, name: str, disk: str) -> tuple[int, int]:
        vm = self.vms.get(name)
        found = [d for d in vm.disks if d.target == disk] if vm is not None else []
        if not found:
            raise NotFound(f"host {self.name}: VM {name} has no disk {disk}")
        if found[0].source and self._place(found[0].source) is not None:
            # As libvirt's blockInfo: the file read in the format the definition declares.
            file = self._volume(found[0].source)
            return disk_of(file, found[0].driver_format or "raw").size, file.allocation
        return self.disk_bytes  # a disk whose file the test did not create

    def reserve_volume(self, path: str) -> None:
        self._volume(path).reserved = True

    def clone_volume(self, source_path: str, source_format: str, pool: str, name: str,
                     fmt: str, preallocation: str | None = None) -> str:
        self._fault("clone_volume")
        image = self.image_info(source_path)
        if image is None:
            raise VirtError(f"host {self.name}: {source_path} is on no datastore")
        if image.read_as != source_format:
            raise VirtError(f"host {self.name}: {source_path} is declared {source_format} "
                            f"but its bytes read as {image.read_as}")
        if image.backing is not None:
            raise VirtError(f"host {self.name}: {source_path} has a backing file")
        source = disk_of(self._volume(source_path), source_format)
        backing = self._backing(pool)
        if name in backing.volumes:
            raise VirtError(f"host {self.name}: volume {name} already exists in {pool}")
        backing.volumes[name] = image_file(source, fmt, preallocation is not None)
        return f"{self.pools[pool][0].path}/{name}"

    def read_volume(self, path: str) -> Generator[bytes | int, None, None]:
        self._fault("read_volume")
        yield from self._volume(path).chunks()

    def write_volume(self, path: str, chunks: Iterable[bytes | int]) -> None:
        self._fault("write_volume")
        self._volume(path).write(chunks)

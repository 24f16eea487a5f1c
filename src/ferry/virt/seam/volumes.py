"""Volumes: the files of a host's datastores (libvirt storage pools), their sizes and bytes."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Protocol

from ferry.virt.seam.data import ImageInfo
from ferry.virt.seam.named import Named


class Volumes(Named, Protocol):
    def refresh_pool(self, pool: str) -> None: ...

    def create_volume(self, pool: str, name: str, capacity: int, fmt: str,
                      preallocation: str | None = None) -> str:
        """Create a volume and return its path on the host.

        ``preallocation`` None keeps it sparse (thin); "falloc" and "full"
        reserve every byte without writing it. Writing every block of a "full"
        (eagerly zeroed) file is the copy's work, not the creation's.
        """
        ...

    def find_volume(self, pool: str, name: str) -> str | None:
        """The volume's path if pool holds it (after a refresh), else None."""
        ...

    def list_volumes(self, pool: str) -> list[str]:
        """The names of every volume the pool holds, read afresh: one call for them all."""
        ...

    def delete_volume(self, pool: str, name: str) -> None: ...

    def image_info(self, path: str) -> ImageInfo | None:
        """The file at ``path`` as this host's storage reads it; None when no datastore
        (pool) of this host holds it, so ferry never reads it."""
        ...

    def volume_size(self, path: str) -> tuple[int, int]:
        """(capacity, allocation) in bytes of the volume at ``path``."""
        ...

    def volume_file_size(self, path: str) -> int:
        """The size in bytes of the volume's file itself (a qcow2 file's, not its disk's)."""
        ...

    def disk_size(self, name: str, disk: str) -> tuple[int, int]:
        """(guest-visible capacity, bytes allocated on the host) of disk ``disk`` of VM ``name``."""
        ...

    def reserve_volume(self, path: str) -> None:
        """Allocate every byte of a raw volume that is still a hole, keeping its data."""
        ...

    def clone_volume(self, source_path: str, source_format: str, pool: str, name: str,
                     fmt: str, preallocation: str | None = None) -> str:
        """Copy or convert a volume of this host into ``pool`` as ``fmt``; the new path.

        The source is read as ``source_format``, what its definition declares. libvirt
        converts a volume in the format it guesses from the bytes and follows the
        backing file it finds there, so this refuses (:class:`~ferry.errors.VirtError`)
        a source the host reads in another format, or one with a backing file.
        """
        ...

    def read_volume(self, path: str) -> Generator[bytes | int, None, None]:
        """The volume file's bytes: data as bytes, holes as their length."""
        ...

    def write_volume(self, path: str, chunks: Iterable[bytes | int]) -> None:
        """Overwrite the volume file from ``chunks`` as :meth:`read_volume` yields them."""
        ...

"""Block copy: mirroring a running VM's disk into another file, then switching to it."""

from __future__ import annotations

from typing import Protocol

from ferry.virt.seam.data import BlockJob
from ferry.virt.seam.named import Named


class BlockCopy(Named, Protocol):
    def block_copy(self, name: str, disk: str, dest_path: str, dest_format: str,
                   synchronous: bool) -> None:
        """Start mirroring ``disk`` into the existing file ``dest_path``."""
        ...

    def block_job(self, name: str, disk: str) -> BlockJob | None:
        """The block job on ``disk`` of VM ``name``; None when none runs."""
        ...

    def pivot_block_copy(self, name: str, disk: str) -> None:
        """Switch the running VM to the (ready) copy of ``disk``; the job ends."""
        ...

    def cancel_block_copy(self, name: str, disk: str) -> None:
        """End the copy of ``disk``; the VM keeps its source."""
        ...

    def set_persistent_disk(self, name: str, disk: str, path: str, fmt: str) -> None:
        """Point the persistent definition's ``disk`` at ``path`` (after a pivot)."""
        ...

    def block_jobs(self, name: str) -> list[str]:
        """Disk targets of VM ``name`` with a block job (copy, commit, pull) running."""
        ...

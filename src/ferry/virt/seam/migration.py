"""Migration: a live move of a running VM to another host, its statistics, and events."""

from __future__ import annotations

from typing import Protocol

from ferry.model import PostcopyState
from ferry.virt.seam.data import (
    IterationCallback,
    LifecycleCallback,
    MigrationOptions,
    MigrationStats,
)
from ferry.virt.seam.named import Named


class Migration(Named, Protocol):
    def migrate(
        self,
        name: str,
        options: MigrationOptions,
        on_iteration: IterationCallback | None = None,
    ) -> None:
        """Live-migrate peer-to-peer; blocks until done, raises on failure or abort."""
        ...

    def migration_stats(self, name: str) -> MigrationStats | None:
        """A sample of the migration of VM ``name`` under way; None when none runs."""
        ...

    def completed_migration_stats(self, name: str) -> MigrationStats | None: ...

    def abort_migration(self, name: str) -> None: ...

    def set_max_downtime(self, name: str, ms: int) -> None: ...

    def start_postcopy(self, name: str) -> None: ...

    def postcopy_state(self, name: str) -> PostcopyState:
        """Whether VM ``name`` is in post-copy here, and whether its post-copy failed."""
        ...

    def pause_postcopy(self, name: str) -> None:
        """Make the source's QEMU give up its broken post-copy stream (it waits for a
        resume then) when libvirt saw the link fail before QEMU did."""
        ...

    def subscribe_lifecycle(self, callback: LifecycleCallback) -> None: ...

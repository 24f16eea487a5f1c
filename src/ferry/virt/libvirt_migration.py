"""Live migration through libvirt: the move itself, its statistics, and VM events.

Part of the libvirt seam (see :mod:`ferry.virt.libvirt_calls`): the calls of
:class:`~ferry.virt.seam.migration.Migration`, mixed into
:class:`ferry.virt.libvirt_host.LibvirtHost`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import libvirt

from ferry.errors import NotFound, VirtError
from ferry.model import PostcopyState
from ferry.virt.base import (
    IterationCallback,
    LifecycleCallback,
    MigrationOptions,
    MigrationStats,
)
from ferry.virt.libvirt_calls import LibvirtCalls
from ferry.virt.libvirt_flags import Definitions, migration_flags, migration_params

_LIFECYCLE = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}


# (state, reason) -> where the VM stands in post-copy, on either host: the source is
# paused while the destination runs; after a link failure libvirt marks both "failed".
_POSTCOPY = {
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY): PostcopyState.ACTIVE,
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY): PostcopyState.ACTIVE,
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED): PostcopyState.FAILED,
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED):
        PostcopyState.FAILED,
}


def postcopy_of(state: int, reason: int) -> PostcopyState:
    return _POSTCOPY.get((state, reason), PostcopyState.NONE)


class MigrationCalls(LibvirtCalls):
    """Moves of one host's running VMs to other hosts, and the events of its VMs."""

    _callbacks: list[int]  # lifecycle subscriptions, deregistered when the host closes

    def migrate(
        self,
        name: str,
        options: MigrationOptions,
        on_iteration: IterationCallback | None = None,
    ) -> None:
        dom = self._domain(name)
        definitions = self._definitions(dom, name) if options.copy_disks else None
        flags = migration_flags(options)
        try:
            params = migration_params(options, name, definitions)
        except VirtError as err:
            raise VirtError(f"host {self.name}: {err.message}") from None
        callback_id = None
        if on_iteration is not None:
            def iteration(_conn: Any, _dom: Any, number: int, _opaque: Any) -> None:
                on_iteration(int(number))

            callback_id = self._call("subscribe to migration iterations", lambda: (
                self._conn.domainEventRegisterAny(
                    dom, libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, iteration, None)))
        try:
            self._call(f"migrate VM {name} to {options.dest_uri}",
                       lambda: dom.migrateToURI3(options.dest_uri, params, flags))
        finally:
            if callback_id is not None:
                try:
                    self._conn.domainEventDeregisterAny(callback_id)
                except libvirt.libvirtError:
                    pass  # the connection went away; its callbacks went with it

    def _definitions(self, dom: Any, name: str) -> Definitions:
        secure = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
        return Definitions(
            live=self._call(f"VM {name}", partial(dom.XMLDesc, secure)),
            saved=self._call(f"VM {name}", partial(
                dom.XMLDesc, secure | libvirt.VIR_DOMAIN_XML_INACTIVE)))

    def _job_stats(self, name: str, flags: int) -> dict[str, Any] | None:
        """libvirt's job statistics of VM ``name``, as typed parameters; None: no such VM."""
        try:
            dom = self._domain(name)
            raw = self._call(f"job statistics of {name}", lambda: dom.jobStats(flags))
        except NotFound:
            return None
        return dict(raw) if raw else None

    def migration_stats(self, name: str) -> MigrationStats | None:
        raw = self._job_stats(name, 0)
        # Just after an abort or a failure libvirt 9.0 still answers for a moment, with
        # type "cancelled" or "failed" and every counter 0 (QEMU drops its RAM counters
        # then): that is no sample of the copy.
        if raw is None or raw.get("type") not in (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                                                  libvirt.VIR_DOMAIN_JOB_UNBOUNDED):
            return None
        return MigrationStats.from_job_stats(raw)

    def completed_migration_stats(self, name: str) -> MigrationStats | None:
        raw = self._job_stats(name, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        if not raw or raw.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return MigrationStats.from_job_stats(raw)

    def abort_migration(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"cancel migration of {name}", dom.abortJob)

    def set_max_downtime(self, name: str, ms: int) -> None:
        dom = self._domain(name)
        self._call(f"set max downtime of {name}", lambda: dom.migrateSetMaxDowntime(int(ms), 0))

    def start_postcopy(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"switch {name} to post-copy", lambda: dom.migrateStartPostCopy(0))

    def postcopy_state(self, name: str) -> PostcopyState:
        dom = self._domain(name)
        state, reason = self._call(f"state of {name}", lambda: dom.state(0))
        return postcopy_of(state, reason)

    def pause_postcopy(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"pause the post-copy of {name}", lambda: dom.abortJobFlags(
            libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY))

    def subscribe_lifecycle(self, callback: LifecycleCallback) -> None:
        def lifecycle(_conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
            name = _LIFECYCLE.get(event, str(event))
            if (event, detail) == (libvirt.VIR_DOMAIN_EVENT_STOPPED,
                                   libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED):
                name = "migrated-away"
            callback(self.name, dom.name(), name)

        cid = self._call("subscribe to VM events", lambda: self._conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None))
        self._callbacks.append(cid)

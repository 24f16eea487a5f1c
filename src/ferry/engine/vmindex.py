"""The control plane's VM inventory: each host's domains as last read, merged by UUID.

Kept per host so that one host's refresh replaces only its own domains; the
merged view (:func:`ferry.engine.identity.merge_vms`) is recomputed for the VMs
those hosts held or hold, from every copy of each, so a moving VM is one entry
however the two hosts' refreshes interleave.
What VMs the users see and may act on is answered here too, with the store's
unfinished jobs: the moves ferry runs, whichever ferry server runs them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace

from ferry.engine.identity import (
    describe,
    hold_of,
    incoming_finding,
    merge_vms,
    moving_finding,
    resolve,
)
from ferry.errors import RefusedError
from ferry.model import VM, MigrationSide
from ferry.store.db import Store


class VMIndex:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._by_host: dict[str, list[VM]] = {}
        self._merged: dict[str, VM] = {}
        self._hosts_of: dict[str, set[str]] = {}  # UUID -> the hosts holding a copy

    def replace(self, hosts: Iterable[str], vms: Iterable[VM]) -> None:
        """``hosts`` now hold exactly ``vms`` (those hosts' domains, as just read)."""
        fresh: dict[str, list[VM]] = {host: [] for host in hosts}
        for vm in vms:
            fresh.setdefault(vm.host, []).append(vm)
        with self._lock:
            self._set(fresh)

    def keep_not_current(self, host: str) -> None:
        """``host`` did not answer: its domains stay as it last showed them, said to be so."""
        with self._lock:
            self._set({host: [replace(vm, current=False)
                              for vm in self._by_host.get(host, [])]})

    def drop_host(self, host: str) -> None:
        with self._lock:
            self._set({host: []})
            self._by_host.pop(host, None)

    def _set(self, fresh: dict[str, list[VM]]) -> None:
        """Replace these hosts' domains and merge again the VMs they held or hold now,
        from every host holding a copy; the others stay merged as they were (a job's
        refresh of its two hosts need not merge the whole fleet). The caller holds
        the lock."""
        affected: set[str] = set()
        for host, vms in fresh.items():
            for vm in self._by_host.get(host, []):
                affected.add(vm.uuid)
                self._hosts_of.get(vm.uuid, set()).discard(host)
            for vm in vms:
                affected.add(vm.uuid)
                self._hosts_of.setdefault(vm.uuid, set()).add(host)
            self._by_host[host] = vms
        copies = [vm for uuid in affected for host in self._hosts_of.get(uuid, ())
                  for vm in self._by_host.get(host, []) if vm.uuid == uuid]
        merged = merge_vms(copies)
        for uuid in affected:
            if uuid in merged:
                self._merged[uuid] = merged[uuid]
            else:
                self._merged.pop(uuid, None)
                self._hosts_of.pop(uuid, None)

    def by_uuid(self) -> dict[str, VM]:
        """UUID -> VM: one entry per VM, a migration's incoming copy folded into its source."""
        with self._lock:
            return dict(self._merged)

    def listed(self) -> list[VM]:
        """Every VM once, on its source while it moves, with the move that holds it."""
        jobs = self._store.unfinished_jobs()
        vms = [replace(vm, moving=hold_of(vm, jobs)) for vm in self.by_uuid().values()]
        return sorted(vms, key=lambda vm: (vm.name, vm.host))

    def get(self, ref: str) -> VM:
        """The VM ``ref`` (a UUID, or a name only one VM has), with its move if it is in one."""
        vm = resolve(self.by_uuid(), ref)
        job = self._store.unfinished_job(vm.uuid)
        return replace(vm, moving=hold_of(vm, [job] if job else []))

    def refuse_if_held(self, vm: VM, action: str) -> None:
        """At once, on the inventory as last read: a VM ferry is moving (the store says so,
        whichever server runs the move). libvirt's own word on a migration is judged on a
        fresh read only (:meth:`refuse_if_moving`): a cached one may be over already."""
        job = self._store.unfinished_job(vm.uuid)
        hold = hold_of(replace(vm, migration=None, moving=None), [job] if job else [])
        if hold is not None:
            raise RefusedError(f"{action} of {vm.name} refused: it is {describe(hold)}",
                               [moving_finding(vm.name, vm.uuid, vm.host, hold, action)])

    def migrating_on(self, host: str) -> bool:
        """Whether libvirt showed a migration on ``host`` when it was last read."""
        with self._lock:
            return any(vm.migration is not None for vm in self._by_host.get(host, []))

    def refuse_if_moving(self, vm: VM, action: str) -> None:
        """Nothing acts on a VM in the middle of a move, nor on a move's incoming copy.

        ``vm`` as its host showed it just now: libvirt's word is only as good as the read."""
        if vm.migration is MigrationSide.INCOMING:
            raise RefusedError(f"{action} of {vm.name} refused: {vm.host} holds only the "
                               "incoming copy of a migration", [incoming_finding(vm, action)])
        job = self._store.unfinished_job(vm.uuid)  # ferry's job first: it names the move
        hold = hold_of(vm, [job] if job else [])
        if hold is not None:
            raise RefusedError(f"{action} of {vm.name} refused: it is {describe(hold)}",
                               [moving_finding(vm.name, vm.uuid, vm.host, hold, action)])

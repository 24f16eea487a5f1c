"""The control plane's VM inventory: each host's domains as last read, merged by UUID.

Kept per host so that one host's refresh replaces only its own domains; the
merged view (:func:`ferry.engine.identity.merge_vms`) is recomputed from all of
them, so a moving VM is one entry however the two hosts' refreshes interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ferry.engine.identity import merge_vms
from ferry.model import VM


class VMIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_host: dict[str, list[VM]] = {}
        self._merged: dict[str, VM] = {}

    def replace(self, hosts: Iterable[str], vms: Iterable[VM]) -> None:
        """``hosts`` now hold exactly ``vms`` (those hosts' domains, as just read)."""
        fresh: dict[str, list[VM]] = {host: [] for host in hosts}
        for vm in vms:
            fresh.setdefault(vm.host, []).append(vm)
        with self._lock:
            self._by_host.update(fresh)
            self._merged = merge_vms(vm for found in self._by_host.values() for vm in found)

    def drop_host(self, host: str) -> None:
        with self._lock:
            self._by_host.pop(host, None)
            self._merged = merge_vms(vm for found in self._by_host.values() for vm in found)

    def by_uuid(self) -> dict[str, VM]:
        """UUID -> VM: one entry per VM, a migration's incoming copy folded into its source."""
        with self._lock:
            return dict(self._merged)

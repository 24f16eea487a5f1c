"""Clusters: membership and EVC, changed one at a time.

A host is in one cluster at most. Joining a cluster with EVC on is judged by
:meth:`ferry.engine.evc.EvcService.judge_join` (vendor, the mode, no VM
running), and a mode is enabled only on what the cluster holds at that
moment, so membership and EVC changes take one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ferry import validate
from ferry.checks.finding import errors
from ferry.engine.evc import EvcService
from ferry.errors import InputError, RefusedError
from ferry.model import Cluster, EvcReport, Inventory
from ferry.store.db import Store


class ClusterService:
    def __init__(self, store: Store, evc: EvcService, running_on: Callable[[str], list[str]],
                 refresh: Callable[[], Inventory], inventory: Callable[[], Inventory]) -> None:
        self._store = store
        self._evc = evc
        self._running_on = running_on  # host -> VMs running there, reread from the host
        self._refresh = refresh
        self._inventory = inventory  # as last refreshed
        self._lock = threading.Lock()

    def create(self, name: str) -> Cluster:
        validate.name("cluster", name)
        self._store.add_cluster(name)
        return self._store.cluster(name)

    def add_host(self, cluster: str, host: str) -> Cluster:
        with self._lock:
            target = self._store.cluster(cluster)
            current = self._store.host(host).cluster
            if current == cluster:
                raise InputError(f"host {host} is already in cluster {cluster}")
            if current is not None:
                raise InputError(f"host {host} is in cluster {current}: remove it from "
                                 f"{current} first ('ferry cluster remove-host {current} "
                                 f"{host}')")
            if target.evc is not None:
                blocking = errors(self._evc.judge_join(target, host, self._running_on(host)))
                if blocking:
                    raise RefusedError(f"adding host {host} to EVC cluster {cluster} refused: "
                                       f"{len(blocking)} requirement(s) not met", blocking)
            self._store.update_host(host, cluster=cluster)
            return self._store.cluster(cluster)

    def remove_host(self, cluster: str, host: str) -> Cluster:
        with self._lock:
            self._store.cluster(cluster)
            if self._store.host(host).cluster != cluster:
                raise InputError(f"host {host} is not in cluster {cluster}")
            self._store.update_host(host, cluster=None)
            return self._store.cluster(cluster)

    def enable_evc(self, cluster: str, mode: str) -> EvcReport:
        with self._lock:
            self._store.cluster(cluster)
            inventory = self._refresh()
            hosts = sorted(inventory.hosts)
            self._evc.enable(cluster, mode, inventory, hosts[0] if hosts else None)
        return self._report(cluster)

    def disable_evc(self, cluster: str) -> EvcReport:
        with self._lock:
            self._store.cluster(cluster)
            self._evc.disable(cluster)
        return self._report(cluster)

    def evc_report(self, cluster: str) -> EvcReport:
        self._store.cluster(cluster)
        return self._report(cluster)

    def _report(self, cluster: str) -> EvcReport:
        return self._evc.report(cluster, list(self._inventory().vms.values()))

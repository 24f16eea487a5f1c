"""What the hosts hold, as ferry last saw it: host facts, VMs, datastores, networks.

The hosts are the truth; this is a cache of them. It is reread on request,
for a host whose VMs sent lifecycle events (a little after the burst
settles), and fully for a host that answers again after a lost connection;
meanwhile that host's VMs stay listed as it last showed them, marked not
current. Datastore identity is proved by probe on every refresh: a full one
groups every pool, one host's places only that host's pools among the groups
known (:mod:`ferry.engine.datastores`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from ferry.engine.connections import HostConnections
from ferry.engine.datastores import group_pools, regroup_host
from ferry.engine.vmindex import VMIndex
from ferry.errors import FerryError, HostError, NotFound
from ferry.model import HOST_SETTINGS, VM, Host, Inventory, Network, Pool
from ferry.service import DatastoreView
from ferry.store.db import Store

LifecycleListener = Callable[[str, str, str], None]
Unsubscribe = Callable[[], None]

# How soon a host that showed a migration is read again: its end may send no event.
MIGRATING_REREAD_S = 2.0


class InventoryCache:
    def __init__(self, store: Store, hosts: HostConnections, vms: VMIndex) -> None:
        self._store = store
        self._hosts = hosts
        self._vms = vms
        self._lock = threading.RLock()
        self._facts: dict[str, Host] = {}
        self._pools: list[Pool] = []
        self._networks: list[Network] = []
        self._listeners: dict[int, LifecycleListener] = {}
        self._next_listener = 0
        self._dirty_hosts: set[str] = set()
        self._wakeup = threading.Event()
        self._closed = False
        threading.Thread(target=self._refresher, name="inventory-refresh", daemon=True).start()

    # -- events from the hosts -------------------------------------------
    def host_lost(self, host: str, error: str) -> None:
        """The host stopped answering: say so, and keep its VMs as it last showed them."""
        with self._lock:
            known = self._facts.get(host)
            if known is not None:
                self._facts[host] = replace(known, connected=False, error=error)
        self._vms.keep_not_current(host)

    def on_lifecycle(self, host: str, vm: str, event: str) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
        self._mark_dirty(host)
        for listener in listeners:
            listener(host, vm, event)

    def subscribe(self, listener: LifecycleListener) -> Unsubscribe:
        with self._lock:
            key = self._next_listener
            self._next_listener += 1
            self._listeners[key] = listener

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return unsubscribe

    def _mark_dirty(self, host: str) -> None:
        with self._lock:
            self._dirty_hosts.add(host)
        self._wakeup.set()

    def _refresher(self) -> None:
        """Refreshes hosts whose VMs changed, a little after the burst of events settles."""
        while not self._closed:
            self._wakeup.wait()
            time.sleep(0.5)
            self._wakeup.clear()
            with self._lock:
                hosts, self._dirty_hosts = self._dirty_hosts, set()
            for host in hosts:
                if self._closed:
                    return  # the store and connections are gone; nothing to refresh into
                try:
                    self.refresh_vms(host)
                except FerryError:
                    continue  # the host's status shows the error on the next full refresh
                if self._vms.migrating_on(host):
                    # A failed migration sends its source no event: look again until
                    # libvirt shows none, so the list does not say "migrating" for ever.
                    timer = threading.Timer(MIGRATING_REREAD_S, self._mark_dirty, (host,))
                    timer.daemon = True
                    timer.start()

    # -- refreshing ------------------------------------------------------
    def _read_host(self, record: Host) -> tuple[list[VM] | None, list[Pool], list[Network]]:
        """What the host holds; VMs None when it does not answer (its last known are kept)."""
        for attempt in (1, 2):
            try:
                conn = self._hosts.get(record.name)
                facts = conn.facts()
                vms, pools, nets = conn.list_vms(), conn.list_pools(), conn.list_networks()
                break
            except HostError as err:
                self._hosts.reset(record.name)
                if attempt == 2:
                    with self._lock:
                        self._facts[record.name] = replace(
                            self._facts.get(record.name, record), connected=False,
                            error=err.message)
                    return None, [], []
        with self._lock:
            self._facts[record.name] = replace(
                record, connected=True, error=None, hostname=facts.hostname,
                host_uuid=facts.host_uuid, cpu_vendor=facts.cpu_vendor,
                cpu_model=facts.cpu_model, cpus=facts.cpus, memory_mib=facts.memory_mib,
                free_memory_mib=facts.free_memory_mib, libvirt_version=facts.libvirt_version,
                hypervisor_version=facts.hypervisor_version, cpu_features=facts.cpu_features)
        return vms, pools, nets

    def refresh(self, host: str | None = None) -> Inventory:
        """Reread every host, or only ``host``: then only its own pools are probed
        against the datastore groups the other hosts were proved to have."""
        records = self._store.hosts()
        if host is not None:
            records = [r for r in records if r.name == host]
            if not records:
                raise NotFound(f"no host named {host}")
        names = {r.name for r in records}
        found = [self._read_host(r) for r in records]
        with self._lock:
            known = [p for p in self._pools if p.host not in names]
            networks = [n for n in self._networks if n.host not in names]
        pools: list[Pool] = []
        answered: list[str] = []
        read: list[VM] = []
        for record, (host_vms, host_pools, host_nets) in zip(records, found, strict=True):
            if host_vms is None:
                self._vms.keep_not_current(record.name)
            else:
                answered.append(record.name)
                read.extend(host_vms)
            pools.extend(host_pools)
            networks.extend(host_nets)
        # One merge for all the hosts read: merging after each host made a full
        # refresh grow with the square of the fleet.
        self._vms.replace(answered, read)
        conns = self._hosts.open_connections()
        if host is None:
            grouped = group_pools(known + pools, conns)
        else:
            grouped = regroup_host(host, pools, known, conns)
        with self._lock:
            self._pools, self._networks = grouped, networks
        return self.inventory()

    def refresh_vms(self, host: str) -> None:
        self._vms.replace((host,), self._hosts.get(host).list_vms())

    def forget(self, host: str) -> None:
        self._vms.drop_host(host)
        with self._lock:
            self._facts.pop(host, None)
            self._pools = [p for p in self._pools if p.host != host]
            self._networks = [n for n in self._networks if n.host != host]

    # -- reading ---------------------------------------------------------
    def known_host(self, name: str) -> Host | None:
        """The host's facts as last read (None: never read)."""
        with self._lock:
            return self._facts.get(name)

    def host_view(self, record: Host) -> Host:
        """The stored host with what it last told about itself."""
        known = self.known_host(record.name)
        if known is None:
            return record
        return replace(known, uri=record.uri, cluster=record.cluster,
                       **{name: getattr(record, name) for name in HOST_SETTINGS})

    def list_hosts(self) -> list[Host]:
        return [self.host_view(h) for h in self._store.hosts()]

    def inventory(self) -> Inventory:
        hosts = {h.name: h for h in self.list_hosts()}
        with self._lock:
            return Inventory(hosts=hosts, vms=self._vms.by_uuid(), pools=tuple(self._pools),
                             networks=tuple(self._networks))

    def pools_on(self, host: str) -> list[Pool]:
        with self._lock:
            return [p for p in self._pools if p.host == host]

    def list_datastores(self) -> list[DatastoreView]:
        groups: dict[str, list[Pool]] = {}
        with self._lock:
            for pool in self._pools:
                groups.setdefault(pool.datastore or f"{pool.name}@{pool.host}", []).append(pool)
        return [DatastoreView(name, tuple(pools)) for name, pools in sorted(groups.items())]

    def list_networks(self) -> list[Network]:
        with self._lock:
            return sorted(self._networks, key=lambda n: (n.name, n.host))

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

"""The control plane: hosts, inventory, lab VMs and migration jobs behind one facade.

Host connections are kept by :mod:`ferry.engine.connections`: opened lazily,
reopened in the background when a host's libvirtd restarts or its link drops,
and that host's inventory refreshed fully once it answers again; meanwhile
its VMs stay listed as it last showed them, marked not current. The
inventory is rediscovered from libvirt on request and on lifecycle events;
datastore identity is proved by probe on every refresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

from ferry import validate
from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Finding, Status, errors, finding_dict
from ferry.checks.report import preflight
from ferry.engine.clusters import ClusterService
from ferry.engine.cold import ColdMigration
from ferry.engine.confirm import Confirmer
from ferry.engine.connections import HostConnections
from ferry.engine.datastores import group_pools
from ferry.engine.diskplan import SUPPORTED_FORMATS, TargetFiles, plan_moves
from ferry.engine.evc import EvcService
from ferry.engine.jobs import JobHandle
from ferry.engine.labvm import create_lab_vm, delete_lab_vm, next_lab_address
from ferry.engine.maintenance import Evacuation
from ferry.engine.placement import evacuation_scope
from ferry.engine.policy import POLICIES
from ferry.engine.preflight import FactGatherer
from ferry.engine.runner import JobRunner
from ferry.engine.svmotion import StorageVMotion
from ferry.engine.vmindex import VMIndex
from ferry.engine.vmotion import HeartbeatSource, Unsubscribe, VMotion
from ferry.errors import (
    FerryError,
    HostError,
    InputError,
    NotFound,
    RefusedError,
)
from ferry.model import (
    VM,
    Cluster,
    EvcReport,
    Host,
    Inventory,
    Job,
    Network,
    Phase,
    Pool,
    VMState,
)
from ferry.service import DatastoreView, FerryService, HostSettingsUpdate, VMCreateRequest
from ferry.store.db import Store
from ferry.virt.base import Connector, HostConnection, MigrationOptions

LifecycleListener = Callable[[str, str, str], None]

# How soon a host that showed a migration is read again: its end may send no event.
MIGRATING_REREAD_S = 2.0


class ControlPlane(FerryService):
    def __init__(
        self,
        store: Store,
        connector: Connector,
        heartbeat: HeartbeatSource | None = None,
        guest_domain_type: str | None = None,
    ) -> None:
        self._store = store
        self._connector = connector
        self._heartbeat = heartbeat
        self._guest_domain_type = guest_domain_type
        self._lock = threading.RLock()
        self._hosts = HostConnections(
            connector, lambda name: self._host_record(name).uri,
            on_open=lambda _host, conn: conn.subscribe_lifecycle(self._on_lifecycle),
            on_lost=self._host_lost, on_back=self._host_back)
        self._confirmer = Confirmer(self._conn, self._hosts.wait)
        self._facts: dict[str, Host] = {}
        self._vms = VMIndex(store)
        self._pools: list[Pool] = []
        self._networks: list[Network] = []
        self._listeners: dict[int, LifecycleListener] = {}
        self._next_listener = 0
        self._dirty_hosts: set[str] = set()
        self._refresh_wakeup = threading.Event()
        self._closed = False
        self._evc = EvcService(store, self._conn, self._guest_type_on)
        self._clusters = ClusterService(store, self._evc, self._running_on, self.refresh,
                                        self.inventory)
        self._gatherer = FactGatherer(self._conn, self._evc.fit)
        # After a job, where its VM now is; every move refreshes fully (datastore
        # probes included) before it is judged, so that need not be done here too.
        self._runner = JobRunner(store, self._slot_limit, self._refresh_vms)
        store.mark_interrupted()
        threading.Thread(target=self._refresher, name="inventory-refresh", daemon=True).start()

    # -- connections (ferry.engine.connections) ----------------------------
    def _conn(self, host: str) -> HostConnection:
        return self._hosts.get(host)

    def _drop(self, host: str) -> None:
        self._hosts.reset(host)

    def _host_lost(self, host: str, error: str) -> None:
        """The host stopped answering: say so, and keep its VMs as it last showed them."""
        with self._lock:
            known = self._facts.get(host)
            if known is not None:
                self._facts[host] = replace(known, connected=False, error=error)
        self._vms.keep_not_current(host)

    def _host_back(self, host: str) -> None:
        """The host answers again: everything it holds is reread, as 'ferry refresh' would."""
        self.refresh(host)

    def _host_record(self, name: str) -> Host:
        return self._store.host(name)

    def _mark_dirty(self, host: str) -> None:
        with self._lock:
            self._dirty_hosts.add(host)
        self._refresh_wakeup.set()

    def _on_lifecycle(self, host: str, vm: str, event: str) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
        self._mark_dirty(host)
        for listener in listeners:
            listener(host, vm, event)

    def _subscribe(self, listener: LifecycleListener) -> Unsubscribe:
        with self._lock:
            key = self._next_listener
            self._next_listener += 1
            self._listeners[key] = listener

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return unsubscribe

    def _refresher(self) -> None:
        """Refreshes hosts whose VMs changed, a little after the burst of events settles."""
        while not self._closed:
            self._refresh_wakeup.wait()
            time.sleep(0.5)
            self._refresh_wakeup.clear()
            with self._lock:
                hosts, self._dirty_hosts = self._dirty_hosts, set()
            for host in hosts:
                if self._closed:
                    return  # the store and connections are gone; nothing to refresh into
                try:
                    self._refresh_vms(host)
                except FerryError:
                    continue  # the host's status shows the error on the next full refresh
                if self._vms.migrating_on(host):
                    # A failed migration sends its source no event: look again until
                    # libvirt shows none, so the list does not say "migrating" for ever.
                    timer = threading.Timer(MIGRATING_REREAD_S, self._mark_dirty, (host,))
                    timer.daemon = True
                    timer.start()

    # -- hosts -----------------------------------------------------------
    def add_host(self, name: str, uri: str, migration_address: str | None = None) -> Host:
        validate.name("host", name)
        validate.host_uri(uri)
        # Stored and handed to libvirt in migration URIs: judged like 'host set' judges it.
        address = validate.address(migration_address or urlsplit(uri).hostname or "")
        existing = self._store.hosts()
        if any(h.name == name for h in existing):
            raise InputError(f"host {name} is already registered")
        conn = self._connector(name, uri)
        try:
            facts = conn.facts()
        finally:
            conn.close()
        for other in existing:
            known = self._facts.get(other.name)
            if known is not None and known.host_uuid == facts.host_uuid:
                raise InputError(f"{uri} is host {other.name} again (same host UUID "
                                 f"{facts.host_uuid}); register each host once")
        self._store.add_host(Host(name=name, uri=uri, migration_address=address))
        self.refresh(name)
        return self._host_view(self._host_record(name))

    def remove_host(self, name: str) -> None:
        self._store.remove_host(name)
        self._hosts.forget(name)
        self._vms.drop_host(name)
        with self._lock:
            self._facts.pop(name, None)
            self._pools = [p for p in self._pools if p.host != name]
            self._networks = [n for n in self._networks if n.host != name]

    def list_hosts(self) -> list[Host]:
        return [self._host_view(h) for h in self._store.hosts()]

    def _host_view(self, record: Host) -> Host:
        with self._lock:
            known = self._facts.get(record.name)
        if known is None:
            return record
        return replace(known, uri=record.uri, migration_address=record.migration_address,
                       migration_enabled=record.migration_enabled,
                       maintenance=record.maintenance, max_migrations=record.max_migrations,
                       memory_limit_mib=record.memory_limit_mib,
                       migration_interface=record.migration_interface,
                       migration_network_isolated=record.migration_network_isolated,
                       cluster=record.cluster)

    # -- inventory -------------------------------------------------------
    def _refresh_host(self, record: Host) -> tuple[list[VM] | None, list[Pool], list[Network]]:
        """What the host holds; VMs None when it does not answer (its last known are kept)."""
        for attempt in (1, 2):
            try:
                conn = self._conn(record.name)
                facts = conn.facts()
                vms, pools, nets = conn.list_vms(), conn.list_pools(), conn.list_networks()
                break
            except HostError as err:
                self._drop(record.name)
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
        records = self._store.hosts()
        if host is not None:
            records = [r for r in records if r.name == host]
            if not records:
                raise NotFound(f"no host named {host}")
        names = {r.name for r in records}
        found = [self._refresh_host(r) for r in records]
        with self._lock:
            pools = [p for p in self._pools if p.host not in names]
            networks = [n for n in self._networks if n.host not in names]
        for record, (host_vms, host_pools, host_nets) in zip(records, found, strict=True):
            if host_vms is None:
                self._vms.keep_not_current(record.name)
            else:
                self._vms.replace((record.name,), host_vms)
            pools.extend(host_pools)
            networks.extend(host_nets)
        pools = group_pools(pools, self._hosts.open_connections())
        with self._lock:
            self._pools, self._networks = pools, networks
        return self.inventory()

    def _refresh_vms(self, host: str) -> None:
        self._vms.replace((host,), self._conn(host).list_vms())

    def inventory(self) -> Inventory:
        hosts = {h.name: h for h in self.list_hosts()}
        with self._lock:
            return Inventory(hosts=hosts, vms=self._vms.by_uuid(), pools=tuple(self._pools),
                             networks=tuple(self._networks))

    def list_vms(self) -> list[VM]:
        return self._vms.listed()

    def get_vm(self, name: str) -> VM:
        return self._vms.get(name)

    def list_datastores(self) -> list[DatastoreView]:
        groups: dict[str, list[Pool]] = {}
        with self._lock:
            for pool in self._pools:
                groups.setdefault(pool.datastore or f"{pool.name}@{pool.host}", []).append(pool)
        return [DatastoreView(name, tuple(pools)) for name, pools in sorted(groups.items())]

    def list_networks(self) -> list[Network]:
        with self._lock:
            return sorted(self._networks, key=lambda n: (n.name, n.host))

    # -- lab VMs and power -----------------------------------------------
    def create_vm(self, request: VMCreateRequest) -> VM:
        validate.name("VM", request.name)
        self.refresh()
        if request.name in {vm.name for vm in self.list_vms()}:
            raise InputError(f"a VM named {request.name} already exists")
        self._refuse_if_in_maintenance(request.host, f"creating {request.name}")
        conn = self._conn(request.host)
        pools = [p for p in self._pools if p.host == request.host]
        if request.datastore not in {p.name for p in pools}:
            raise NotFound(f"host {request.host} has no datastore named {request.datastore}")
        evc = self._evc.mode_of_host(request.host)
        create_lab_vm(conn, request, [p.name for p in pools],
                      next_lab_address(self.list_vms()), self._guest_type_on(request.host),
                      cpu_xml=evc[1].cpu_xml if evc else None)
        self.refresh(request.host)
        return self.get_vm(request.name)

    def _fresh(self, vm: VM, action: str) -> VM:
        """``vm`` reread from its host, refused if it is in a move as the host shows now."""
        self._vms.refuse_if_held(vm, action)
        fresh = self._conn(vm.host).get_vm(vm.name)
        if fresh is None:
            raise NotFound(f"VM {vm.name} is no longer on {vm.host}")
        self._vms.refuse_if_moving(fresh, action)
        return fresh

    def power(self, vm: str, action: str) -> VM:
        current = self.get_vm(vm)
        if action not in ("on", "off", "force-off"):
            raise InputError(f"unknown power action {action!r}: use on, off or force-off")
        current = self._fresh(current, f"power {action}")
        conn, name = self._conn(current.host), current.name
        if action == "on":
            self._refuse_if_in_maintenance(current.host, f"starting {name}")
            definition = self._evc.definition_for_start(conn, name)
            if definition is not None:  # its host's cluster has EVC: start it at the mode
                conn.define_vm(definition)
            conn.start_vm(name)
        elif action == "off":
            conn.shutdown_vm(name)
        else:
            conn.destroy_vm(name)
        self._refresh_vms(current.host)
        return self.get_vm(current.uuid)

    def delete_vm(self, vm: str) -> None:
        current = self._fresh(self.get_vm(vm), "delete")
        conn = self._conn(current.host)
        pools = [p for p in self._pools if p.host == current.host]
        delete_lab_vm(conn, current, pools)
        self._refresh_vms(current.host)

    # -- pre-flight ------------------------------------------------------
    def check(self, request: MoveRequest) -> list[Finding]:
        vm = self._validate_move(request)
        # The VM is reread from its host; the rest is the inventory as last refreshed.
        fresh = self._fresh(vm, "check")
        inventory = self.inventory()
        inventory = replace(inventory, vms={**inventory.vms, vm.uuid: fresh})
        return self._judge(inventory, fresh, request)

    def _validate_move(self, request: MoveRequest) -> VM:
        vm = self.get_vm(request.vm)
        hosts = {h.name for h in self._store.hosts()}
        if request.dest_host is not None and request.dest_host not in hosts:
            raise NotFound(f"no host named {request.dest_host}")
        target_host = request.destination(vm.host)
        if request.dest_datastore is not None:
            pools = {p.name for p in self.inventory().pools_on(target_host)}
            if request.dest_datastore not in pools:
                raise NotFound(f"host {target_host} has no datastore named "
                               f"{request.dest_datastore}")
        if request.dest_datastore is None:
            if request.dest_host is None:
                raise InputError("say where to move the VM: a host, a datastore, or both")
            if request.dest_host == vm.host:
                raise InputError(f"VM {vm.name} already {'is' if request.cold else 'runs'} on "
                                 f"{vm.host}: choose another host")
        return vm

    def _judge(self, inventory: Inventory, vm: VM, request: MoveRequest) -> list[Finding]:
        facts = self._gatherer.gather(inventory, vm, request, self._runner.slots_taken())
        return preflight(facts)

    def update_host(self, name: str, changes: HostSettingsUpdate) -> Host:
        self._host_record(name)
        values = changes.validated()
        if values:
            self._store.update_host(name, **values)
            self._gatherer.forget_reachability()
        return self._host_view(self._host_record(name))

    # -- clusters (ferry.engine.clusters) -----------------------------------
    def create_cluster(self, name: str) -> Cluster:
        return self._clusters.create(name)

    def list_clusters(self) -> list[Cluster]:
        return self._store.clusters()

    def delete_cluster(self, name: str) -> None:
        self._store.remove_cluster(name)

    def add_cluster_host(self, cluster: str, host: str) -> Cluster:
        return self._clusters.add_host(cluster, host)

    def remove_cluster_host(self, cluster: str, host: str) -> Cluster:
        return self._clusters.remove_host(cluster, host)

    def enable_evc(self, cluster: str, mode: str) -> EvcReport:
        return self._clusters.enable_evc(cluster, mode)

    def disable_evc(self, cluster: str) -> EvcReport:
        return self._clusters.disable_evc(cluster)

    def evc_report(self, cluster: str) -> EvcReport:
        return self._clusters.evc_report(cluster)

    def _running_on(self, host: str) -> list[str]:
        """The VMs running on ``host`` now, reread from it."""
        self._refresh_vms(host)
        return sorted(vm.name for vm in self._vms.by_uuid().values()
                      if vm.host == host and vm.state is not VMState.SHUTOFF)

    def _guest_type_on(self, host: str) -> str:
        """The virtualization type ferry gives guests on ``host``."""
        if self._guest_domain_type:
            return self._guest_domain_type
        return "kvm" if "kvm" in self._conn(host).facts().domain_types else "qemu"

    # -- maintenance mode ------------------------------------------------
    def enter_maintenance(self, name: str) -> Job:
        record = self._host_record(name)
        self._store.update_host(name, maintenance=True)  # nothing is placed here from now
        self._gatherer.forget_reachability()
        inventory = self.refresh()
        vms = [vm for vm in inventory.vms.values() if vm.host == name]
        scope = evacuation_scope(record, self._store.hosts())
        targets = [self._host_view(h) for h in scope.hosts]
        handle = JobHandle.create(self._store, "evacuate", name, name, None)
        handle.event(Phase.STATE_CHECK, f"{name} is in maintenance mode; {len(vms)} VM(s) to "
                     f"move to {scope.description}: "
                     f"{', '.join(t.name for t in targets) or 'none available'}",
                     vms=[vm.name for vm in vms])
        runner = Evacuation(
            host=name, vms=vms, targets=targets, all_vms=list(inventory.vms.values()),
            check=self.check, job_of=self.get_job, cancel=self.cancel_job,
            start=self._start_placed, scope=scope.description)
        return self._runner.coordinate(handle, runner.run, (name,))

    def exit_maintenance(self, name: str) -> Host:
        self._host_record(name)
        self._store.update_host(name, maintenance=False)
        self._gatherer.forget_reachability()
        return self._host_view(self._host_record(name))

    def _refuse_if_in_maintenance(self, host: str, what: str) -> None:
        if self._host_record(host).maintenance:
            raise RefusedError(f"{what} refused: host {host} is in maintenance mode", [Finding(
                "host.maintenance", Status.ERROR, f"host {host} is in maintenance mode",
                remedy=f"choose another host, or 'ferry host maintenance exit {host}'",
                objects={"host": host})])

    # -- migration -------------------------------------------------------
    def start_migration(self, vm: str, dest_host: str | None, dest_datastore: str | None = None,
                        disk_format: str = "same", disks: tuple[str, ...] = (),
                        cold: bool = False) -> Job:
        current = self.get_vm(vm)
        if disk_format not in SUPPORTED_FORMATS:
            raise InputError(f"unknown disk format {disk_format!r}: use "
                             f"{', '.join(SUPPORTED_FORMATS)}")
        # At once, before any pre-flight: a VM already moving is refused naming its move.
        # The store's constraint is the guarantee (JobHandle.create); this is the courtesy.
        self._vms.refuse_if_held(current, "migration")
        if cold:
            return self._start_cold_move(current, dest_host, dest_datastore, disk_format, disks)
        if dest_datastore is not None and dest_host in (None, current.host):
            return self._start_storage_move(current, dest_datastore, disk_format, disks)
        request = MoveRequest(current.uuid, dest_host=dest_host, dest_datastore=dest_datastore,
                              disks=disks, disk_format=disk_format)
        self._validate_move(request)
        assert dest_host is not None  # _validate_move refuses a move that names nowhere
        # Judge on fresh facts: the probe runs again and the VM is reread.
        current = self._reread(current, "migration")
        inventory = self.inventory()
        findings, warnings = self._judge_or_refuse(
            inventory, current, request, f"migration of {current.name} to {dest_host}")
        return self._launch_live(inventory, current, request, findings, warnings)

    def _reread(self, vm: VM, action: str, host: str | None = None) -> VM:
        """A full refresh (``host``'s only, if given), then the VM as the hosts show it now."""
        # A host that did not answer lists nothing: the VM as last seen is then judged,
        # and the pre-flight says what of its host could not be verified.
        current = self.refresh(host).vms.get(vm.uuid, vm)
        self._vms.refuse_if_moving(current, action)  # a move begun meanwhile, by anyone
        return current

    def _start_placed(self, vm: VM, dest_host: str, findings: list[Finding]) -> Job:
        """An evacuation's move to the host it chose on ``findings``, judged a moment ago
        on the inventory the evacuation refreshed: judging again would only repeat it."""
        if vm.state is VMState.SHUTOFF:
            return self.start_migration(vm.uuid, dest_host, cold=True)
        blocking = errors(findings)
        if blocking:
            raise RefusedError(f"migration of {vm.name} to {dest_host} refused: "
                               f"{len(blocking)} requirement(s) not met", blocking)
        request = MoveRequest(vm.uuid, dest_host=dest_host)
        return self._launch_live(self.inventory(), self.get_vm(vm.uuid), request, findings,
                                 [f for f in findings if f.status is Status.WARNING])

    def _launch_live(self, inventory: Inventory, current: VM, request: MoveRequest,
                     findings: list[Finding], warnings: list[Finding]) -> Job:
        """Queue a judged live move (host, or host and datastore) on the slots."""
        vm, dest_host, dest_datastore = current.name, request.dest_host, request.dest_datastore
        disk_format, disks = request.disk_format, request.disks
        assert dest_host is not None
        dest_record = self._host_record(dest_host)
        policy = POLICIES["default"]
        options = MigrationOptions(
            dest_uri=dest_record.uri,
            migration_address=dest_record.migration_address,
            shared_storage_proven=True,  # the report proved every file's datastore shared
            auto_converge=policy.auto_converge,
            auto_converge_initial_pct=policy.throttle_initial_pct,
            auto_converge_increment_pct=policy.throttle_increment_pct,
            allow_postcopy=policy.allow_postcopy,
        )
        source, dest = self._conn(current.host), self._conn(dest_host)
        # Shared-nothing: the disks travel with the memory, into new files there.
        files = self._target_files(inventory, current, dest_host, dest_datastore, disk_format,
                                   disks)
        kind = "migrate" if files is None else "migrate-with-storage"
        handle = JobHandle.create(self._store, kind, vm, current.host, dest_host, current.uuid)
        handle.event(Phase.STATE_CHECK, f"{vm} is {current.state.value} on {current.host}")
        handle.checked(findings, warnings, dest_host + (
            f", datastore {dest_datastore}" if dest_datastore else ""))
        runner = VMotion(
            vm=vm, source=source, dest=dest,
            options=options, policy=policy, subscribe_lifecycle=self._subscribe,
            heartbeat=self._heartbeat, warnings=[finding_dict(f) for f in warnings],
            files=files, reach=self._conn, confirmer=self._confirmer,
        )
        return self._runner.launch(handle, runner.run, (current.host, dest_host))

    def _start_storage_move(self, vm: VM, datastore: str, disk_format: str,
                            disks: tuple[str, ...]) -> Job:
        request = MoveRequest(vm.uuid, dest_datastore=datastore, disks=disks,
                              disk_format=disk_format)
        self._validate_move(request)
        current = self._reread(vm, "storage migration", vm.host)
        inventory = self.inventory()
        findings, warnings = self._judge_or_refuse(
            inventory, current, request, f"moving the disks of {vm.name} to {datastore}")
        conn = self._conn(vm.host)  # before the job: a job that never runs would hold the VM
        handle = JobHandle.create(self._store, "storage-migrate", vm.name, vm.host, vm.host,
                                  vm.uuid)
        handle.checked(findings, warnings, f"datastore {datastore}")
        runner = StorageVMotion(
            vm=current, conn=conn, target_pool=datastore,
            pools=[p for p in inventory.pools if p.host == vm.host],
            disk_format=disk_format, disks=disks, heartbeat=self._heartbeat)
        return self._runner.launch(handle, runner.run, (vm.host,))

    def _start_cold_move(self, vm: VM, dest_host: str | None, datastore: str | None,
                         disk_format: str, disks: tuple[str, ...]) -> Job:
        request = MoveRequest(vm.uuid, dest_host=dest_host, dest_datastore=datastore, cold=True,
                              disks=disks, disk_format=disk_format)
        self._validate_move(request)
        target_host = request.destination(vm.host)
        current = self._reread(vm, "cold migration")
        inventory = self.inventory()
        where = " and ".join(part for part in (
            f"host {dest_host}" if dest_host not in (None, vm.host) else "",
            f"datastore {datastore}" if datastore else "") if part)
        findings, warnings = self._judge_or_refuse(
            inventory, current, request, f"cold migration of {vm.name} to {where}")
        source, dest = self._conn(vm.host), self._conn(target_host)
        files = self._target_files(inventory, current, target_host, datastore, disk_format,
                                   disks)
        handle = JobHandle.create(self._store, "cold-migrate", vm.name, vm.host, target_host,
                                  vm.uuid)
        handle.event(Phase.STATE_CHECK, f"{vm.name} is powered off on {vm.host}: cold migration")
        handle.checked(findings, warnings, where)
        runner = ColdMigration(current, source, dest, files)
        return self._runner.launch(handle, runner.run, (vm.host, target_host))

    def _target_files(self, inventory: Inventory, vm: VM, dest_host: str,
                      datastore: str | None, disk_format: str,
                      disks: tuple[str, ...]) -> TargetFiles | None:
        """The files a move between hosts creates in ``datastore``; None: no disk moves."""
        if datastore is None:
            return None
        moves = plan_moves(vm, inventory.pools_on(vm.host), disk_format, disks)
        if not moves:
            raise InputError(f"VM {vm.name} has no data disk to move to {datastore}")
        return TargetFiles(vm.name, moves, self._conn(vm.host), self._conn(dest_host),
                           datastore, reopen_target=lambda: self._conn(dest_host))

    def _judge_or_refuse(self, inventory: Inventory, vm: VM, request: MoveRequest,
                         what: str) -> tuple[list[Finding], list[Finding]]:
        """Every row, or RefusedError listing every error; returns (rows, warnings)."""
        findings = self._judge(inventory, vm, request)
        blocking = errors(findings)
        if blocking:
            raise RefusedError(
                f"{what} refused: {len(blocking)} requirement(s) not met", blocking)
        return findings, [f for f in findings if f.status is Status.WARNING]

    def _slot_limit(self, host: str) -> int:
        try:
            return self._host_record(host).max_migrations
        except NotFound:
            return 2  # the seed's default; the move itself will fail on the missing host

    def list_jobs(self, limit: int = 100) -> list[Job]:
        return self._store.jobs(limit)

    def get_job(self, job_id: str) -> Job:
        return self._store.job(job_id)

    def cancel_job(self, job_id: str) -> Job:
        return self._runner.cancel(job_id)

    def running_jobs(self) -> list[Job]:
        return self._runner.unfinished()

    def close(self) -> None:
        self._closed = True
        self._refresh_wakeup.set()
        self._hosts.close()
        self._store.close()

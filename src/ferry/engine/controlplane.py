"""The control plane: one facade over hosts, inventory, VMs, clusters and jobs.

Each responsibility lives in its own module and is wired together here:
host connections (:mod:`ferry.engine.connections`), the inventory cache
(:mod:`ferry.engine.inventory`), a VM's own life (:mod:`ferry.engine.vms`),
starting moves (:mod:`ferry.engine.moves`), running jobs
(:mod:`ferry.engine.runner`), clusters and EVC (:mod:`ferry.engine.clusters`)
and maintenance mode (:mod:`ferry.engine.maintenance`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ferry import config, validate
from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Finding
from ferry.engine.clusters import ClusterService
from ferry.engine.confirm import Confirmer
from ferry.engine.connections import HostConnections
from ferry.engine.evc import EvcService
from ferry.engine.inventory import InventoryCache
from ferry.engine.jobs import JobHandle
from ferry.engine.maintenance import Evacuation
from ferry.engine.moves import MoveStarter
from ferry.engine.placement import evacuation_scope
from ferry.engine.policy import policy_named
from ferry.engine.preflight import FactGatherer
from ferry.engine.reconcile import Reconciler
from ferry.engine.runner import LEASE_S, JobBody, JobRunner
from ferry.engine.tallying import RecordTallies
from ferry.engine.vmindex import VMIndex
from ferry.engine.vmotion import HeartbeatSource
from ferry.engine.vms import VMActions, VMFactory
from ferry.errors import InputError
from ferry.figures import Figures
from ferry.job import Job, JobKind, JobState, Phase, ServerInfo
from ferry.model import (
    VM,
    Cluster,
    EvcReport,
    Host,
    Inventory,
    Network,
    PolicyChoice,
    VMState,
)
from ferry.service import DatastoreView, FerryService, HostSettingsUpdate, VMCreateRequest
from ferry.store.db import Store
from ferry.virt.base import Connector, HostConnection


class ControlPlane(FerryService):
    def __init__(
        self,
        store: Store,
        connector: Connector,
        heartbeat: HeartbeatSource | None = None,
        guest_domain_type: str | None = None,
        vm_factory: VMFactory | None = None,
        server_name: str | None = None,
        lease_s: float = LEASE_S,
        postcopy_recovery_s: float = config.DEFAULT_POSTCOPY_RECOVERY_S,
    ) -> None:
        self._store = store
        self._lease_s = lease_s
        self._connector = connector
        self._guest_domain_type = guest_domain_type
        self._hosts = HostConnections(
            connector, lambda name: self._store.host(name).uri,
            on_open=lambda _host, conn: conn.subscribe_lifecycle(self._on_lifecycle),
            on_lost=self._host_lost, on_back=self._host_back)
        self._vms = VMIndex(store)
        self._inventory = InventoryCache(store, self._hosts, self._vms)
        self._evc = EvcService(store, self._conn, self._guest_type_on)
        self._clusters = ClusterService(store, self._evc, self._running_on, self.refresh,
                                        self.inventory)
        self._gatherer = FactGatherer(self._conn, self._evc.fit)
        self._actions = VMActions(store, self._inventory, self._vms, self._conn, self._evc,
                                  self._guest_type_on, vm_factory)
        self._moves = MoveStarter(store, self._inventory, self._vms, self._conn,
                                  self._gatherer, self._slots_taken, self._actions.fresh,
                                  heartbeat, Confirmer(self._conn, self._hosts.wait),
                                  postcopy_recovery_s)
        reconciler = Reconciler(self._conn, self._resume_evacuation)
        # After a job, where its VM now is; every move refreshes fully (datastore
        # probes included) before it is judged, so that need not be done here too.
        self._runner = JobRunner(store, self._body_for, reconciler.run,
                                 self._inventory.refresh_vms, name=server_name,
                                 lease_s=lease_s)
        self._moves.queue_with(self._runner.launch)
        self._tallies = RecordTallies(store)

    # -- connections (ferry.engine.connections) ----------------------------
    def _conn(self, host: str) -> HostConnection:
        return self._hosts.get(host)

    def _host_lost(self, host: str, error: str) -> None:
        self._inventory.host_lost(host, error)

    def _host_back(self, host: str) -> None:
        """The host answers again: everything it holds is reread, as 'ferry refresh' would."""
        self.refresh(host)

    def _on_lifecycle(self, host: str, vm: str, event: str) -> None:
        self._inventory.on_lifecycle(host, vm, event)

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
            known = self._inventory.known_host(other.name)
            if known is not None and known.host_uuid == facts.host_uuid:
                raise InputError(f"{uri} is host {other.name} again (same host UUID "
                                 f"{facts.host_uuid}); register each host once")
        self._store.add_host(Host(name=name, uri=uri, migration_address=address))
        self.refresh(name)
        return self._inventory.host_view(self._store.host(name))

    def remove_host(self, name: str) -> None:
        self._store.remove_host(name)
        self._hosts.forget(name)
        self._inventory.forget(name)

    def list_hosts(self) -> list[Host]:
        return self._inventory.list_hosts()

    def update_host(self, name: str, changes: HostSettingsUpdate) -> Host:
        self._store.host(name)
        values = changes.validated()
        if values:
            self._store.update_host(name, **values)
            self._gatherer.forget(name)
        return self._inventory.host_view(self._store.host(name))


    # -- inventory (ferry.engine.inventory) ---------------------------------
    def refresh(self, host: str | None = None) -> Inventory:
        self._gatherer.forget(host)
        return self._inventory.refresh(host)

    def inventory(self) -> Inventory:
        return self._inventory.inventory()

    def list_vms(self) -> list[VM]:
        return self._vms.listed()

    def get_vm(self, name: str) -> VM:
        return self._vms.get(name)

    # -- default convergence policies (ferry.engine.policy) --------------------
    def set_cluster_policy(self, cluster: str, policy: str | None) -> Cluster:
        """``policy`` None: the cluster's VMs fall back on ferry's default."""
        self._store.set_cluster_policy(cluster, _checked_policy(policy))
        return self._store.cluster(cluster)

    def set_vm_policy(self, vm: str, policy: str | None) -> PolicyChoice:
        """``policy`` None: the VM falls back on its cluster's default, else ferry's."""
        self._store.set_vm_policy(self._vms.get(vm).uuid, _checked_policy(policy))
        return self.vm_policy(vm)

    def vm_policy(self, vm: str) -> PolicyChoice:
        found = self._vms.get(vm)
        chosen, why = self._moves.policy_for(found, None)
        return PolicyChoice(found.name, self._store.vm_policy(found.uuid), chosen, why)

    def list_datastores(self) -> list[DatastoreView]:
        return self._inventory.list_datastores()

    def list_networks(self) -> list[Network]:
        return self._inventory.list_networks()

    # -- a VM's own life (ferry.engine.vms) -------------------------------
    def create_vm(self, request: VMCreateRequest) -> VM:
        return self._actions.create(request)

    def power(self, vm: str, action: str) -> VM:
        return self._actions.power(vm, action)

    def delete_vm(self, vm: str) -> None:
        self._actions.delete_vm(vm)

    # -- moves (ferry.engine.moves) ---------------------------------------
    def check(self, request: MoveRequest) -> list[Finding]:
        return self._moves.check(request)

    def check_each(self, vm: str, hosts: list[str] | None = None,
                   cold: bool = False) -> dict[str, list[Finding]]:
        """The VM's report for each of ``hosts`` (default: every other host), all judged
        from one snapshot of the facts, as an evacuation judges its VMs."""
        current = self._vms.get(vm)
        names = hosts if hosts is not None else [
            h.name for h in self._store.hosts() if h.name != current.host]
        judge = self._moves.judge_each(self._inventory.inventory(), current, cold)
        return {name: judge(name) for name in names}

    def start_migration(self, vm: str, dest_host: str | None, dest_datastore: str | None = None,
                        disk_format: str = "same", disks: tuple[str, ...] = (),
                        cold: bool = False, requested_by: str | None = None,
                        policy: str | None = None, bandwidth_mibps: int | None = None) -> Job:
        return self._moves.start(vm, dest_host, dest_datastore, disk_format, disks, cold,
                                 requested_by=requested_by, policy=policy,
                                 bandwidth_mibps=bandwidth_mibps)

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
        self._inventory.refresh_vms(host)
        return sorted(vm.name for vm in self._vms.by_uuid().values()
                      if vm.host == host and vm.state is not VMState.SHUTOFF)

    def _guest_type_on(self, host: str) -> str:
        """The virtualization type ferry gives guests on ``host``."""
        if self._guest_domain_type:
            return self._guest_domain_type
        return "kvm" if "kvm" in self._conn(host).facts().domain_types else "qemu"

    # -- maintenance mode ------------------------------------------------
    def enter_maintenance(self, name: str, requested_by: str | None = None) -> Job:
        self._store.host(name)
        self._store.update_host(name, maintenance=True)  # nothing is placed here from now
        self._gatherer.forget(name)
        handle = JobHandle.create(self._store, JobKind.EVACUATE, name, name, None,
                                  requested_by=requested_by)
        evacuation = self._evacuation(name, handle)
        return self._runner.coordinate(handle, evacuation.run)

    def _evacuation(self, host: str, handle: JobHandle) -> Evacuation:
        """The evacuation of ``host`` from where it stands: the VMs still there, and the
        moves the job already started (a server taking it over resumes it)."""
        record = self._store.host(host)
        inventory = self.refresh()
        children = self._store.children(handle.id)
        moving = {c.vm_uuid for c in children if not c.state.finished}
        vms = [vm for vm in inventory.vms.values() if vm.host == host and vm.uuid not in moving]
        scope = evacuation_scope(record, self._store.hosts())
        targets = [self._inventory.host_view(h) for h in scope.hosts]
        handle.event(Phase.STATE_CHECK, f"{host} is in maintenance mode; {len(vms)} VM(s) to "
                     f"move to {scope.description}: "
                     f"{', '.join(t.name for t in targets) or 'none available'}",
                     vms=[vm.name for vm in vms])
        # One snapshot for every VM of the evacuation: the inventory just refreshed and
        # the clusters (each a read of the whole fleet) are read once, not per VM.
        clusters = self._store.clusters()
        return Evacuation(
            host=host, vms=vms, targets=targets, all_vms=list(inventory.vms.values()),
            judge=lambda vm, cold: self._moves.judge_each(inventory, vm, cold, clusters),
            job_of=self.get_job, cancel=self.cancel_job,
            start=lambda vm, dest, findings: self._moves.start_placed(
                vm, dest, findings, inventory, parent=handle.id,
                requested_by=handle.job.requested_by),
            scope=scope.description, children=children)

    def _resume_evacuation(self, handle: JobHandle) -> None:
        host = handle.job.source_host
        if not self._store.host(host).maintenance:
            handle.event(Phase.ROLLBACK, f"{host} left maintenance mode while its evacuation "
                         "had no server: nothing more is moved")
            handle.finish(JobState.CANCELLED, handle.job.report,
                          f"{host} left maintenance mode")
            return
        self._evacuation(host, handle).run(handle)

    def _body_for(self, job: Job) -> JobBody:
        if job.kind is JobKind.EVACUATE:
            raise InputError(f"job {job.id} (evacuation) is not started from the queue")
        return self._moves.body_for(job)

    def _slots_taken(self) -> dict[str, int]:
        return self._runner.slots_taken()

    def exit_maintenance(self, name: str) -> Host:
        self._store.host(name)
        self._store.update_host(name, maintenance=False)
        self._gatherer.forget(name)
        return self._inventory.host_view(self._store.host(name))

    # -- jobs ------------------------------------------------------------
    def list_jobs(self, limit: int = 100) -> list[Job]:
        return self._store.jobs(limit)

    def current_jobs(self, limit: int = 40) -> list[Job]:
        return self._store.current_jobs(limit)

    def get_job(self, job_id: str) -> Job:
        return self._store.job(job_id)

    def list_servers(self) -> list[ServerInfo]:
        servers = self._store.servers(self._lease_s)
        return sorted(servers, key=lambda s: s.id != self._runner.server_id)

    def cancel_job(self, job_id: str) -> Job:
        return self._runner.cancel(job_id)

    def figures(self) -> Figures:
        # From the records, not from this server's memory: every server sharing the
        # database reports the same moves, and a restart loses none of them.
        in_use, _waiting = self._store.slot_usage()
        return Figures(records=self._tallies.read(), slots_in_use=in_use,
                       hosts=tuple(self._inventory.list_hosts()))

    def close(self) -> None:
        self._runner.close()
        self._inventory.close()
        self._hosts.close()
        self._store.close()


def _checked_policy(name: str | None) -> str | None:
    """A default as it is stored: a policy's own name (InputError naming the choices),
    or None."""
    return policy_named(name).name if name else None

"""Starting moves: a request validated, judged on fresh facts, and queued as a job.

Every kind of move starts here: live (host, or host and datastore), Storage
VMotion, cold, and an evacuation's placed moves. Each is refused with every
error of its pre-flight report, or recorded as a job and handed to the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ferry import validate
from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Finding, Status, errors, finding_dict
from ferry.checks.host import stream_encrypted
from ferry.checks.report import preflight
from ferry.engine.cold import ColdMigration, transport_of
from ferry.engine.confirm import Confirmer
from ferry.engine.diskplan import SUPPORTED_FORMATS, DiskMove, TargetFiles, plan_moves
from ferry.engine.inventory import InventoryCache
from ferry.engine.jobs import JobHandle
from ferry.engine.policy import (
    DEFAULT_POLICY,
    bandwidth_limit,
    choose_policy,
    policy_named,
    postcopy_blocker,
)
from ferry.engine.preflight import FactGatherer, SourceFacts
from ferry.engine.svmotion import StorageVMotion
from ferry.engine.vmindex import VMIndex
from ferry.engine.vmotion import HeartbeatSource, VMotion
from ferry.errors import InputError, NotFound, RefusedError
from ferry.job import Job, JobKind, MoveSpec, Phase
from ferry.model import VM, Cluster, Inventory, Pool, VMState
from ferry.store.db import Store
from ferry.virt.base import HostConnection, MigrationOptions


class MoveStarter:
    def __init__(self, store: Store, inventory: InventoryCache, vms: VMIndex,
                 conn: Callable[[str], HostConnection], gatherer: FactGatherer,
                 slots_taken: Callable[[], dict[str, int]], fresh: Callable[[VM, str], VM],
                 heartbeat: HeartbeatSource | None, confirmer: Confirmer,
                 postcopy_recovery_s: float) -> None:
        self._postcopy_recovery_s = postcopy_recovery_s
        self._store = store
        self._inventory = inventory
        self._vms = vms
        self._conn = conn
        self._gatherer = gatherer
        self._slots_taken = slots_taken
        self._queue: Callable[[JobHandle], Job] | None = None
        self._fresh = fresh
        self._heartbeat = heartbeat
        self._confirmer = confirmer

    def queue_with(self, queue: Callable[[JobHandle], Job]) -> None:
        """Where recorded moves go to wait for their slots (the job runner)."""
        self._queue = queue

    def check(self, request: MoveRequest) -> list[Finding]:
        vm = self._validate_move(request)
        # The VM is reread from its host; the rest is the inventory as last refreshed.
        fresh = self._fresh(vm, "check")
        inventory = self._inventory.inventory()
        inventory = replace(inventory, vms={**inventory.vms, vm.uuid: fresh})
        return self._judge(inventory, fresh, request)

    def _validate_move(self, request: MoveRequest) -> VM:
        vm = self._vms.get(request.vm)
        if request.dest_host is not None:
            self._store.host(request.dest_host)  # NotFound names it
        target_host = request.destination(vm.host)
        if request.dest_datastore is not None:
            pools = {p.name for p in self._inventory.pools_on(target_host)}
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

    def judge_each(self, inventory: Inventory, vm: VM, cold: bool,
                   clusters: list[Cluster] | None = None) -> Callable[[str], list[Finding]]:
        """``vm``'s pre-flight report for any destination host, from one snapshot.

        The VM is reread once, its own host's facts and the slots are read once, and
        ``inventory`` and ``clusters`` are the ones given (an evacuation's, read when it
        began; clusters None: read now); each report then asks only the destination
        what it alone can tell.
        """
        fresh = self._fresh(vm, "check")
        running = self._slots_taken()
        if clusters is None:
            clusters = self._store.clusters()
        own: list[SourceFacts] = []

        def judge(dest: str) -> list[Finding]:
            request = MoveRequest(fresh.uuid, dest_host=dest, cold=cold)
            if not own:
                own.append(self._gatherer.source_facts(fresh, request))
            return preflight(self._gatherer.gather(inventory, fresh, request, running,
                                                   own[0], clusters))

        return judge

    def _judge(self, inventory: Inventory, vm: VM, request: MoveRequest) -> list[Finding]:
        facts = self._gatherer.gather(inventory, vm, request, self._slots_taken())
        return preflight(facts)

    def start(self, vm: str, dest_host: str | None, dest_datastore: str | None = None,
              disk_format: str = "same", disks: tuple[str, ...] = (), cold: bool = False,
              parent: str | None = None, requested_by: str | None = None,
              policy: str | None = None, bandwidth_mibps: int | None = None) -> Job:
        """``requested_by``: the user who asked (an evacuation's moves: the evacuation's);
        ``policy``: the convergence policy of a live move between hosts (None: the VM's
        default, else its cluster's, else ferry's); ``bandwidth_mibps``: its own limit
        on the migration network (the hosts' limits apply as well)."""
        if policy is not None:
            policy = policy_named(policy).name  # refused before any reading
        if bandwidth_mibps is not None:
            validate.bandwidth(bandwidth_mibps, "the move's bandwidth")
        current = self._vms.get(vm)
        if disk_format not in SUPPORTED_FORMATS:
            raise InputError(f"unknown disk format {disk_format!r}: use "
                             f"{', '.join(SUPPORTED_FORMATS)}")
        # At once, before any pre-flight: a VM already moving is refused naming its move.
        # The store's constraint is the guarantee (JobHandle.create); this is the courtesy.
        self._vms.refuse_if_held(current, "migration")
        live_between_hosts = not cold and dest_host not in (None, current.host)
        if bandwidth_mibps is not None and not live_between_hosts:
            raise InputError(f"a bandwidth limit applies to a live move between hosts; the "
                             f"move of {current.name} asked is "
                             f"{'cold' if cold else 'on its own host'}: leave it out")
        if cold:
            return self._start_cold_move(current, dest_host, dest_datastore, disk_format, disks,
                                         parent, requested_by)
        if dest_datastore is not None and dest_host in (None, current.host):
            return self._start_storage_move(current, dest_datastore, disk_format, disks,
                                            requested_by)
        request = MoveRequest(current.uuid, dest_host=dest_host, dest_datastore=dest_datastore,
                              disks=disks, disk_format=disk_format)
        self._validate_move(request)
        assert dest_host is not None  # _validate_move refuses a move that names nowhere
        # Judge on fresh facts: the probe runs again and the VM is reread.
        current = self._reread(current, "migration")
        inventory = self._inventory.inventory()
        findings, warnings = self._judge_or_refuse(
            inventory, current, request, f"migration of {current.name} to {dest_host}")
        return self._launch_live(inventory, current, request, findings, warnings, parent,
                                 requested_by, policy, bandwidth_mibps)

    def _reread(self, vm: VM, action: str, host: str | None = None) -> VM:
        """A full refresh (``host``'s only, if given), then the VM as the hosts show it now."""
        # A host that did not answer lists nothing: the VM as last seen is then judged,
        # and the pre-flight says what of its host could not be verified.
        current = self._inventory.refresh(host).vms.get(vm.uuid, vm)
        self._vms.refuse_if_moving(current, action)  # a move begun meanwhile, by anyone
        return current

    def start_placed(self, vm: VM, dest_host: str, findings: list[Finding],
                     inventory: Inventory | None = None, parent: str | None = None,
                     requested_by: str | None = None) -> Job:
        """An evacuation's move to the host it chose on ``findings``, judged a moment ago
        on ``inventory``, the one the evacuation refreshed: judging again would only
        repeat it."""
        if vm.state is VMState.SHUTOFF:
            return self.start(vm.uuid, dest_host, cold=True, parent=parent,
                              requested_by=requested_by)
        blocking = errors(findings)
        if blocking:
            raise RefusedError(f"migration of {vm.name} to {dest_host} refused: "
                               f"{len(blocking)} requirement(s) not met", blocking)
        request = MoveRequest(vm.uuid, dest_host=dest_host)
        if inventory is None:
            inventory = self._inventory.inventory()
        return self._launch_live(inventory, self._vms.get(vm.uuid), request,
                                 findings, [f for f in findings if f.status is Status.WARNING],
                                 parent, requested_by)

    def _record(self, kind: JobKind, vm: VM, dest_host: str, request: MoveRequest,
                findings: list[Finding], warnings: list[Finding], against: str,
                parent: str | None, state_check: str, requested_by: str | None,
                policy: tuple[str, str] | None = None,
                bandwidth_mibps: int | None = None) -> Job:
        """The judged move, recorded queued with what any server needs to run it."""
        spec = MoveSpec(vm.uuid, request.dest_host, request.dest_datastore,
                        request.disk_format, request.disks, request.cold,
                        tuple(finding_dict(f) for f in warnings),
                        encrypted=stream_encrypted(findings),
                        policy=policy[0] if policy else DEFAULT_POLICY,
                        bandwidth_mibps=bandwidth_mibps)
        handle = JobHandle.create(
            self._store, kind, vm.name, vm.host, dest_host, vm.uuid, spec=spec,
            slot_hosts=(vm.host, dest_host), parent_id=parent, requested_by=requested_by)
        handle.event(Phase.STATE_CHECK, state_check)
        if policy is not None:
            handle.event(Phase.STATE_CHECK, f"convergence policy {policy[0]} ({policy[1]})",
                         policy=policy[0])
        handle.checked(findings, warnings, against)
        assert self._queue is not None, "the control plane wires the queue before any move"
        return self._queue(handle)

    def _launch_live(self, inventory: Inventory, current: VM, request: MoveRequest,
                     findings: list[Finding], warnings: list[Finding],
                     parent: str | None = None, requested_by: str | None = None,
                     policy: str | None = None, bandwidth_mibps: int | None = None) -> Job:
        """Queue a judged live move (host, or host and datastore) on the slots, with the
        policy asked, else the VM's or its cluster's default, else ferry's."""
        dest_host, dest_datastore = request.dest_host, request.dest_datastore
        assert dest_host is not None
        if dest_datastore is not None:  # refused now, not when it would start
            self._planned(inventory.pools_on(current.host), current, dest_datastore, request)
        kind = JobKind.MIGRATE if dest_datastore is None else JobKind.MIGRATE_WITH_STORAGE
        return self._record(kind, current, dest_host, request, findings, warnings,
                            dest_host + (f", datastore {dest_datastore}"
                                         if dest_datastore else ""),
                            parent, f"{current.name} is {current.state.value} on {current.host}",
                            requested_by, self.policy_for(current, policy), bandwidth_mibps)

    def policy_for(self, vm: VM, asked: str | None) -> tuple[str, str]:
        """The policy a live move of ``vm`` runs with, and why (see choose_policy)."""
        cluster = self._store.host(vm.host).cluster
        cluster_default = self._store.cluster(cluster).migration_policy if cluster else None
        return choose_policy(asked, vm.name, self._store.vm_policy(vm.uuid), cluster,
                             cluster_default)

    def _start_storage_move(self, vm: VM, datastore: str, disk_format: str,
                            disks: tuple[str, ...], requested_by: str | None) -> Job:
        request = MoveRequest(vm.uuid, dest_datastore=datastore, disks=disks,
                              disk_format=disk_format)
        self._validate_move(request)
        current = self._reread(vm, "storage migration", vm.host)
        inventory = self._inventory.inventory()
        findings, warnings = self._judge_or_refuse(
            inventory, current, request, f"moving the disks of {vm.name} to {datastore}")
        self._conn(vm.host)  # before the job: a host that does not answer refuses it now
        return self._record(JobKind.STORAGE_MIGRATE, current, vm.host, request, findings,
                            warnings, f"datastore {datastore}", None,
                            f"{vm.name} is {current.state.value} on {vm.host}", requested_by)

    def _start_cold_move(self, vm: VM, dest_host: str | None, datastore: str | None,
                         disk_format: str, disks: tuple[str, ...],
                         parent: str | None = None, requested_by: str | None = None) -> Job:
        request = MoveRequest(vm.uuid, dest_host=dest_host, dest_datastore=datastore, cold=True,
                              disks=disks, disk_format=disk_format)
        self._validate_move(request)
        target_host = request.destination(vm.host)
        current = self._reread(vm, "cold migration")
        inventory = self._inventory.inventory()
        where = " and ".join(part for part in (
            f"host {dest_host}" if dest_host not in (None, vm.host) else "",
            f"datastore {datastore}" if datastore else "") if part)
        findings, warnings = self._judge_or_refuse(
            inventory, current, request, f"cold migration of {vm.name} to {where}")
        if datastore is not None:
            self._planned(inventory.pools_on(current.host), current, datastore, request)
        return self._record(JobKind.COLD_MIGRATE, current, target_host, request, findings,
                            warnings, where, parent,
                            f"{vm.name} is powered off on {vm.host}: cold migration",
                            requested_by)

    # -- running a recorded move (on whichever server claims it) -------------------
    def body_for(self, job: Job) -> Callable[[JobHandle], None]:
        """What runs ``job`` now, built from its record and the hosts as they are."""
        spec = job.spec
        if spec is None:
            raise InputError(f"job {job.id} records no move to run")
        target = job.dest_host or job.source_host
        current = self._conn(job.source_host).get_vm(job.vm)  # as its host shows it now
        if current is None or current.uuid != spec.vm_uuid:
            raise NotFound(f"VM {job.vm} is no longer on {job.source_host}")
        # Only the source's datastores: the whole fleet's inventory is not needed here.
        pools = self._inventory.pools_on(job.source_host)
        request = MoveRequest(spec.vm_uuid, dest_host=spec.dest_host,
                              dest_datastore=spec.dest_datastore, disks=spec.disks,
                              disk_format=spec.disk_format, cold=spec.cold)
        source, dest = self._conn(job.source_host), self._conn(target)
        if job.kind is JobKind.STORAGE_MIGRATE:
            assert spec.dest_datastore is not None
            return StorageVMotion(
                vm=current, conn=source, target_pool=spec.dest_datastore,
                pools=pools, disk_format=spec.disk_format,
                disks=spec.disks, heartbeat=self._heartbeat).run
        files = None
        if spec.dest_datastore is not None:
            files = TargetFiles(current.name, self._planned(pools, current,
                                                            spec.dest_datastore, request),
                                source, dest, spec.dest_datastore,
                                reopen_target=lambda: self._conn(target))
        if job.kind is JobKind.COLD_MIGRATE:
            uris = {self._store.host(h).uri for h in {job.source_host, target}}
            return ColdMigration(current, source, dest, files, transport_of(uris)).run
        dest_record = self._store.host(target)
        # The hosts' limits as they are now: an admin's change applies to a queued move.
        bandwidth = bandwidth_limit(spec.bandwidth_mibps, {
            r.name: r.migration_bandwidth_mibps
            for r in (self._store.host(job.source_host), dest_record)})
        policy = policy_named(spec.policy)
        blocked = None
        if policy.allow_postcopy:
            # The versions the inventory read when the move was judged: asking the hosts
            # again would only repeat it.
            versions = {h: self._libvirt_version(h) for h in (source.name, dest.name)}
            blocked = postcopy_blocker(versions, files is not None, current.domain_type)
            if blocked is not None and not policy.postcopy_at_any_risk:
                policy = replace(policy, allow_postcopy=False)
        options = MigrationOptions(
            dest_uri=dest_record.uri,
            migration_address=dest_record.migration_address,
            shared_storage_proven=True,  # the report proved every file's datastore shared
            tls=spec.encrypted,
            auto_converge=policy.auto_converge,
            auto_converge_initial_pct=policy.throttle_initial_pct,
            auto_converge_increment_pct=policy.throttle_increment_pct,
            allow_postcopy=policy.allow_postcopy,
            bandwidth_mibps=bandwidth[0],
        )
        return VMotion(
            vm=current.name, source=source, dest=dest,
            options=options, policy=policy, subscribe_lifecycle=self._inventory.subscribe,
            heartbeat=self._heartbeat, warnings=list(spec.warnings),
            files=files, reach=self._conn, confirmer=self._confirmer,
            postcopy_blocked=blocked, recovery_wait_s=self._postcopy_recovery_s,
            bandwidth_why=bandwidth[1],
        ).run

    def _libvirt_version(self, host: str) -> str | None:
        known = self._inventory.known_host(host)
        return known.libvirt_version if known is not None else None

    def _planned(self, source_pools: list[Pool], vm: VM, datastore: str,
                 request: MoveRequest) -> list[DiskMove]:
        """The files a move to ``datastore`` creates; InputError when no disk would move."""
        moves = plan_moves(vm, source_pools, request.disk_format, request.disks)
        if not moves:
            raise InputError(f"VM {vm.name} has no data disk to move to {datastore}")
        return moves

    def _judge_or_refuse(self, inventory: Inventory, vm: VM, request: MoveRequest,
                         what: str) -> tuple[list[Finding], list[Finding]]:
        """Every row, or RefusedError listing every error; returns (rows, warnings)."""
        findings = self._judge(inventory, vm, request)
        blocking = errors(findings)
        if blocking:
            raise RefusedError(
                f"{what} refused: {len(blocking)} requirement(s) not met", blocking)
        return findings, [f for f in findings if f.status is Status.WARNING]


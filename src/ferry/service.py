"""The control plane's facade: what the REST API (and through it the CLI) can ask.

One :class:`Ferry` per server process. It owns the store, the host
connections, the inventory cache and the migration engine. Every method
raises only :mod:`ferry.errors` exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry import validate
from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Finding
from ferry.errors import InputError
from ferry.figures import Figures
from ferry.job import Job, ServerInfo
from ferry.model import (
    MAX_MAX_MIGRATIONS,
    MAX_MEMORY_LIMIT_MIB,
    MIN_MAX_MIGRATIONS,
    MIN_MEMORY_LIMIT_MIB,
    VM,
    Cluster,
    EvcReport,
    Host,
    Inventory,
    Network,
    PolicyChoice,
    Pool,
)


@dataclass(frozen=True)
class VMCreateRequest:
    """A lab VM built from the lab guest image; ferry writes the domain XML."""

    name: str
    host: str
    datastore: str  # pool name on that host
    memory_mib: int = 512
    vcpus: int = 1
    disk_mib: int = 256  # a data disk for the disk writer; 0 for none
    disk_format: str = "qcow2"
    heartbeat: bool = True
    memory_workload_mib: int = 0
    disk_writer: bool = False
    network: str = "Production"
    start: bool = True


@dataclass(frozen=True)
class HostSettingsUpdate:
    """What an admin may change about a registered host; None leaves a value as it is."""

    migration_enabled: bool | None = None
    migration_address: str | None = None
    migration_interface: str | None = None
    migration_network_isolated: bool | None = None
    allow_cleartext_migration: bool | None = None
    max_migrations: int | None = None
    memory_limit_mib: int | None = None
    clear_memory_limit: bool = False
    migration_bandwidth_mibps: int | None = None
    clear_migration_bandwidth: bool = False

    def validated(self) -> dict[str, object]:
        values: dict[str, object] = {}
        if self.migration_enabled is not None:
            values["migration_enabled"] = self.migration_enabled
        if self.migration_address is not None:
            values["migration_address"] = validate.address(self.migration_address)
        if self.migration_interface is not None:
            values["migration_interface"] = validate.interface(self.migration_interface)
        if self.migration_network_isolated is not None:
            values["migration_network_isolated"] = self.migration_network_isolated
        if self.allow_cleartext_migration is not None:
            values["allow_cleartext_migration"] = self.allow_cleartext_migration
        if self.max_migrations is not None:
            if not MIN_MAX_MIGRATIONS <= self.max_migrations <= MAX_MAX_MIGRATIONS:
                raise InputError(f"max migrations {self.max_migrations} is out of range "
                                 f"{MIN_MAX_MIGRATIONS}..{MAX_MAX_MIGRATIONS}")
            values["max_migrations"] = self.max_migrations
        if self.clear_memory_limit:
            values["memory_limit_mib"] = None
        elif self.memory_limit_mib is not None:
            if not MIN_MEMORY_LIMIT_MIB <= self.memory_limit_mib <= MAX_MEMORY_LIMIT_MIB:
                raise InputError(f"memory limit {self.memory_limit_mib} MiB is out of range "
                                 f"{MIN_MEMORY_LIMIT_MIB}..{MAX_MEMORY_LIMIT_MIB}")
            values["memory_limit_mib"] = self.memory_limit_mib
        if self.clear_migration_bandwidth:
            values["migration_bandwidth_mibps"] = None
        elif self.migration_bandwidth_mibps is not None:
            values["migration_bandwidth_mibps"] = validate.bandwidth(
                self.migration_bandwidth_mibps)
        return values


@dataclass(frozen=True)
class DatastoreView:
    """A datastore: one storage seen by one or more hosts (pools proved identical by probe)."""

    name: str
    pools: tuple[Pool, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(sorted(p.host for p in self.pools))

    @property
    def shared(self) -> bool:
        return len(self.pools) > 1


class FerryService:
    """Interface the API layer depends on; ferry.engine.controlplane implements it."""

    # Hosts
    def add_host(self, name: str, uri: str, migration_address: str | None = None) -> Host:
        raise NotImplementedError

    def remove_host(self, name: str) -> None:
        raise NotImplementedError

    def update_host(self, name: str, changes: HostSettingsUpdate) -> Host:
        raise NotImplementedError

    def create_cluster(self, name: str) -> Cluster:
        raise NotImplementedError

    def list_clusters(self) -> list[Cluster]:
        raise NotImplementedError

    def delete_cluster(self, name: str) -> None:
        """Refused while the cluster has hosts."""
        raise NotImplementedError

    def add_cluster_host(self, cluster: str, host: str) -> Cluster:
        """A host is in one cluster at most."""
        raise NotImplementedError

    def remove_cluster_host(self, cluster: str, host: str) -> Cluster:
        raise NotImplementedError

    def enable_evc(self, cluster: str, mode: str) -> EvcReport:
        """``mode``: "auto" (the hosts' baseline) or a CPU model; refused naming offenders."""
        raise NotImplementedError

    def set_cluster_policy(self, cluster: str, policy: str | None) -> Cluster:
        """The convergence policy of its VMs' moves when none is asked; None: ferry's."""
        raise NotImplementedError

    def vm_policy(self, vm: str) -> PolicyChoice:
        """The policy a live move of ``vm`` runs with when none is asked, and why."""
        raise NotImplementedError

    def set_vm_policy(self, vm: str, policy: str | None) -> PolicyChoice:
        """The VM's own default policy; None: its cluster's, else ferry's."""
        raise NotImplementedError

    def disable_evc(self, cluster: str) -> EvcReport:
        raise NotImplementedError

    def evc_report(self, cluster: str) -> EvcReport:
        """The mode, and per host what it hides from VMs."""
        raise NotImplementedError

    def enter_maintenance(self, name: str, requested_by: str | None = None) -> Job:
        """Mark the host in maintenance and start moving every VM off it (a job).

        ``requested_by``: the user who asked; the evacuation's moves inherit it.
        """
        raise NotImplementedError

    def exit_maintenance(self, name: str) -> Host:
        raise NotImplementedError

    def check(self, request: MoveRequest) -> list[Finding]:
        """Every requirement of the move, judged now; never raises for a failing one."""
        raise NotImplementedError

    def list_hosts(self) -> list[Host]:
        raise NotImplementedError

    def refresh(self, host: str | None = None) -> Inventory:
        raise NotImplementedError

    # Inventory
    def inventory(self) -> Inventory:
        raise NotImplementedError

    def list_vms(self) -> list[VM]:
        raise NotImplementedError

    def get_vm(self, name: str) -> VM:
        """``name``: a VM's UUID, or a name one VM has (AmbiguousName names every holder).

        Every method that takes a VM takes it so; one in a move is refused (``vm.moving``).
        """
        raise NotImplementedError

    def list_datastores(self) -> list[DatastoreView]:
        raise NotImplementedError

    def list_networks(self) -> list[Network]:
        raise NotImplementedError

    # Lab VMs and power
    def create_vm(self, request: VMCreateRequest) -> VM:
        raise NotImplementedError

    def power(self, vm: str, action: str) -> VM:
        """action: on | off (graceful) | force-off."""
        raise NotImplementedError

    def delete_vm(self, vm: str) -> None:
        """Power off, undefine, and delete the VM's disk volumes (never shared images)."""
        raise NotImplementedError

    # Migration jobs
    def start_migration(self, vm: str, dest_host: str | None, dest_datastore: str | None = None,
                        disk_format: str = "same", disks: tuple[str, ...] = (),
                        cold: bool = False, requested_by: str | None = None,
                        policy: str | None = None, bandwidth_mibps: int | None = None) -> Job:
        """Validates, refuses (RefusedError listing every reason) or starts a job.

        ``policy``: the convergence policy of a live move between hosts (None: the
        default); an unknown name is an InputError naming the choices.
        ``bandwidth_mibps``: what a live move between hosts may use of the migration
        network (None: what the hosts' limits allow); another move is refused with it.

        ``requested_by``: the user who asked, recorded on the job.

        ``dest_host`` alone: live migration; ``dest_datastore`` alone: live
        storage migration on the VM's host; both: live, memory and disks
        together. ``cold``: the powered-off VM's files and registration move.
        """
        raise NotImplementedError

    def list_jobs(self, limit: int = 100) -> list[Job]:
        raise NotImplementedError

    def current_jobs(self, limit: int = 40) -> list[Job]:
        """Every unfinished job, then the ``limit`` most recent finished ones (the Recent
        Tasks pane)."""
        raise NotImplementedError

    def list_servers(self) -> list[ServerInfo]:
        """The ferry servers sharing this one's database, this one first."""
        raise NotImplementedError

    def get_job(self, job_id: str) -> Job:
        raise NotImplementedError

    def cancel_job(self, job_id: str) -> Job:
        raise NotImplementedError

    # Monitoring
    def figures(self) -> Figures:
        """What the job records add up to now, and the hosts as this server sees them."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

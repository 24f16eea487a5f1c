"""A host's inventory through libvirt: its facts, VMs, datastores and networks.

Part of the libvirt seam (see :mod:`ferry.virt.libvirt_calls`): the calls of
:class:`~ferry.virt.seam.inventory.Inventory`, mixed into
:class:`ferry.virt.libvirt_host.LibvirtHost`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import partial
from typing import Any

import libvirt

from ferry.errors import NotFound
from ferry.model import VM, MigrationSide, Network, Pool, PostcopyState, VMState
from ferry.virt import cpuxml, domxml
from ferry.virt.base import GuestPlatform, HostFacts
from ferry.virt.libvirt_calls import PROBE_POOL_PREFIX, LibvirtCalls, translate
from ferry.virt.libvirt_migration import postcopy_of

_STATE = {
    libvirt.VIR_DOMAIN_RUNNING: VMState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VMState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: VMState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: VMState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VMState.PAUSED,
}


class InventoryCalls(LibvirtCalls):
    """What one host is and holds, read from libvirt."""

    def facts(self) -> HostFacts:
        caps = ET.fromstring(self._call("capabilities", self._conn.getCapabilities))
        info = self._call("node info", self._conn.getInfo)
        free = self._call("free memory", self._conn.getFreeMemory)
        lib = self._call("version", self._conn.getLibVersion)
        hyp = self._call("version", self._conn.getVersion)
        guest_types = {
            d.get("type", "") for d in caps.findall("guest/arch/domain")
        }
        return HostFacts(
            hostname=self._call("hostname", self._conn.getHostname),
            host_uuid=caps.findtext("host/uuid", ""),
            arch=caps.findtext("host/cpu/arch", ""),
            cpu_vendor=caps.findtext("host/cpu/vendor", "unknown"),
            cpu_model=caps.findtext("host/cpu/model", "unknown"),
            cpus=int(info[2]),
            memory_mib=int(info[1]),
            free_memory_mib=int(free) // 2**20,
            libvirt_version=_version(lib),
            hypervisor_version=_version(hyp),
            domain_types=tuple(sorted(t for t in guest_types if t)),
            cpu_features=tuple(sorted(
                f.get("name", "") for f in caps.findall("host/cpu/feature"))),
        )

    def guest_platform(self, domain_type: str = "qemu") -> GuestPlatform:
        xml = self._call("domain capabilities", lambda: self._conn.getDomainCapabilities(
            None, "x86_64", None, domain_type, 0))
        machine, models = cpuxml.usable_models(xml)
        return GuestPlatform(domain_type=domain_type, machine=machine, cpu_models=models)

    def _vm_from_domain(self, dom: Any) -> VM:
        state_code, reason = self._call("VM state", lambda: dom.state(0))
        xml = self._call("VM definition", lambda: dom.XMLDesc(0))
        snapshots = self._call("snapshots", lambda: dom.snapshotNum(0))
        vm = domxml.parse_domain(xml, self.name, _STATE.get(state_code, VMState.OTHER), snapshots)
        persistent = bool(self._call("VM persistence", dom.isPersistent))
        migration = None
        if state_code != libvirt.VIR_DOMAIN_SHUTOFF:
            migration = self._migration_side(dom)
        postcopy = postcopy_of(state_code, reason)
        if not persistent or migration is not None or postcopy is not PostcopyState.NONE:
            vm = VM(**{**vm.__dict__, "persistent": persistent, "migration": migration,
                       "postcopy": postcopy})
        return vm

    def _migration_side(self, dom: Any) -> MigrationSide | None:
        """Whether a running domain is a migration's source or its destination's copy.

        Seen in the lab with libvirt 9.0, a VM moving host1 -> host3: on host1
        the domain is running (reason booted), persistent, and its job statistics
        say operation MIGRATION_OUT; on host3 the copy is paused (reason
        migrating), transient, and asking its job statistics fails with
        OPERATION_UNSUPPORTED, "migration statistics are available only on the
        source host" (qemuDomainGetJobStatsInternal's answer while the domain's
        job is an incoming migration). A state alone cannot tell: the source is
        paused (migrating) too at the switchover, and in post-copy the
        destination runs.
        """
        try:
            stats = dom.jobStats(0)
        except libvirt.libvirtError as err:
            code = err.get_error_code()
            if code == libvirt.VIR_ERR_OPERATION_UNSUPPORTED:
                return MigrationSide.INCOMING
            if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_OPERATION_TIMEOUT):
                return None  # stopped meanwhile, or another job holds it: in no migration
            if code == libvirt.VIR_ERR_NO_SUPPORT:
                return None  # a driver without jobs (test:///default) migrates nothing
            raise translate(err, f"host {self.name}: job of VM {dom.name()}") from err
        operation = stats.get("operation")
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        if operation == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
            return MigrationSide.OUTGOING
        if operation == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN:
            return MigrationSide.INCOMING  # a later libvirt may answer on the destination
        return None

    def list_vms(self) -> list[VM]:
        domains = self._call("list VMs", lambda: self._conn.listAllDomains(0))
        found = []
        for dom in domains:
            try:
                found.append(self._vm_from_domain(dom))
            except NotFound:
                continue  # vanished between listing and reading: migrated or undefined
        return found

    def get_vm(self, name: str) -> VM | None:
        try:
            return self._vm_from_domain(self._domain(name))
        except NotFound:
            return None

    def list_pools(self) -> list[Pool]:
        pools = []
        for pool in self._call("list pools", lambda: self._conn.listAllStoragePools(0)):
            if str(pool.name()).startswith(PROBE_POOL_PREFIX):
                continue  # a probe's, gone in a moment
            info = self._call("pool info", pool.info)
            xml = self._call("pool definition", partial(pool.XMLDesc, 0))
            root = ET.fromstring(xml)
            pools.append(Pool(
                host=self.name,
                name=pool.name(),
                pool_type=root.get("type", "dir"),
                path=domxml.pool_path(xml),
                active=info[0] == libvirt.VIR_STORAGE_POOL_RUNNING,
                capacity=int(info[1]),
                allocation=int(info[2]),
                available=int(info[3]),
            ))
        return pools

    def list_networks(self) -> list[Network]:
        networks = []
        for net in self._call("list networks", lambda: self._conn.listAllNetworks(0)):
            xml = self._call("network definition", partial(net.XMLDesc, 0))
            networks.append(domxml.parse_network(xml, self.name, bool(net.isActive())))
        return networks



def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

"""The real :class:`~ferry.virt.base.HostConnection`: libvirt over TLS (or SSH).

With :mod:`ferry.virt.libvirt_calls` (errors translated), :mod:`ferry.virt.libvirt_storage`
(datastores and disks) and :mod:`ferry.virt.libvirt_cpu` (CPU functions), this is
the libvirt seam: the only modules of ferry that import libvirt. Nothing above
it needs to know libvirt's error codes.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import libvirt

from ferry import config
from ferry.checks.facts import CpuVerdict, LinkFacts, Reachability
from ferry.errors import (
    ConfigError,
    HostError,
    NotFound,
    VirtError,
)
from ferry.model import VM, MigrationSide, Network, Pool, VMState
from ferry.virt import cpuxml, domxml
from ferry.virt.base import (
    CloseCallback,
    CpuFunctions,
    GuestPlatform,
    HostFacts,
    IterationCallback,
    LifecycleCallback,
    MigrationOptions,
    MigrationStats,
)
from ferry.virt.libvirt_calls import libvirt_call, translate
from ferry.virt.libvirt_cpu import HypervisorCpu
from ferry.virt.libvirt_storage import StorageCalls

T = TypeVar("T")

_STATE = {
    libvirt.VIR_DOMAIN_RUNNING: VMState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VMState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: VMState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: VMState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VMState.PAUSED,
}

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

_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "a read or write on it failed",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "the host's libvirtd closed it (stopped or restarted)",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "the host stopped answering keepalives",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by ferry",
}

_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ensure_event_loop() -> None:
    """libvirt delivers events and keepalives only while someone runs its loop."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def connection_uri(uri: str) -> str:
    """The URI ferry itself opens: the user's URI plus ferry's client PKI for TLS."""
    parts = urlsplit(uri)
    if not parts.scheme.endswith("+tls"):
        return uri
    pki = config.pki_dir()
    if not (pki / "clientcert.pem").exists():
        raise ConfigError(f"no TLS client certificate in {pki}: install cacert.pem, "
                          "clientcert.pem and clientkey.pem there")
    query = urlencode({"pkipath": str(pki), "no_tty": "1"})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class LibvirtHost(StorageCalls):
    """One host's libvirtd, reached by URI."""

    def __init__(self, name: str, uri: str) -> None:
        _ensure_event_loop()
        self.name = name
        self.uri = uri
        with libvirt_call(f"cannot connect to host {name} at {uri}"):
            self._conn: Any = libvirt.open(connection_uri(uri))
        with libvirt_call(f"host {name}: keepalive"):
            self._conn.setKeepAlive(5, 3)
        self._callbacks: list[int] = []
        self._close_watched = False

    # -- facts -----------------------------------------------------------
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

    # -- inventory -------------------------------------------------------
    def _vm_from_domain(self, dom: Any) -> VM:
        state_code = self._call("VM state", lambda: dom.state(0))[0]
        xml = self._call("VM definition", lambda: dom.XMLDesc(0))
        snapshots = self._call("snapshots", lambda: dom.snapshotNum(0))
        vm = domxml.parse_domain(xml, self.name, _STATE.get(state_code, VMState.OTHER), snapshots)
        persistent = bool(self._call("VM persistence", dom.isPersistent))
        migration = None
        if state_code != libvirt.VIR_DOMAIN_SHUTOFF:
            migration = self._migration_side(dom)
        if not persistent or migration is not None:
            vm = VM(**{**vm.__dict__, "persistent": persistent, "migration": migration})
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

    # -- lifecycle -------------------------------------------------------
    def undefine_vm(self, name: str) -> None:
        dom = self._domain(name)
        # Snapshot and checkpoint metadata belong to the definition: without these
        # flags libvirt refuses to undefine a VM that has any.
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        self._call(f"undefine VM {name}", lambda: dom.undefineFlags(flags))

    def start_vm(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"start VM {name}", dom.create)

    def shutdown_vm(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"shut down VM {name}", dom.shutdown)

    def destroy_vm(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"power off VM {name}", dom.destroy)

    def suspend_vm(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"pause VM {name}", dom.suspend)

    def resume_vm(self, name: str) -> None:
        dom = self._domain(name)
        self._call(f"resume VM {name}", dom.resume)

    # -- migration -------------------------------------------------------
    def migrate(
        self,
        name: str,
        options: MigrationOptions,
        on_iteration: IterationCallback | None = None,
    ) -> None:
        dom = self._domain(name)
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST
            | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
            | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
        )
        if options.shared_storage_proven:
            # libvirt cannot see that a folder is shared; ferry's probe did.
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        if options.allow_postcopy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        if options.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        params: dict[str, Any] = {}
        if options.migration_address:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{options.migration_address}"
        if options.auto_converge and options.auto_converge_initial_pct is not None:
            params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] = int(
                options.auto_converge_initial_pct)
        if options.auto_converge and options.auto_converge_increment_pct is not None:
            params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] = int(
                options.auto_converge_increment_pct)
        if options.bandwidth_mibps:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(options.bandwidth_mibps)
        if options.copy_disks:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params.update(self._copy_disk_params(dom, name, options))
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

    def _copy_disk_params(self, dom: Any, name: str, options: MigrationOptions) -> dict[str, Any]:
        """Which disks QEMU copies over NBD, and both destination definitions repointed."""
        files = {c.target: (c.path, c.fmt) for c in options.copy_disks}
        secure = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
        live = self._call(f"VM {name}", partial(dom.XMLDesc, secure))
        saved = self._call(f"VM {name}", partial(
            dom.XMLDesc, secure | libvirt.VIR_DOMAIN_XML_INACTIVE))
        try:
            return {
                libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(files),
                # The running VM on the destination opens the new files ...
                libvirt.VIR_MIGRATE_PARAM_DEST_XML: domxml.retarget_disks(live, files),
                # ... and so does its saved definition (libvirt would keep the old paths).
                libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: domxml.retarget_disks(saved, files),
            }
        except KeyError as err:
            raise VirtError(f"host {self.name}: VM {name} has no disk {err.args[0]}") from None

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

    # -- events ----------------------------------------------------------
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

    # -- facts for the pre-flight checks ---------------------------------
    def compare_cpu(self, domain_type: str, cpu_xml: str) -> CpuVerdict:
        try:
            result = self._conn.compareHypervisorCPU(
                None, "x86_64", None, domain_type, cpu_xml,
                libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_CPU_INCOMPATIBLE:
                raise translate(err, f"host {self.name}: compare CPU") from err
            detail = err.get_error_message() or str(err)
            return CpuVerdict(False, cpuxml.missing_features(detail), detail)
        return CpuVerdict(result != libvirt.VIR_CPU_COMPARE_INCOMPATIBLE)

    # -- CPU definitions (EVC) ----------------------------------------------
    def host_cpu(self, domain_type: str) -> str:
        xml = self._call("domain capabilities", lambda: self._conn.getDomainCapabilities(
            None, "x86_64", None, domain_type, 0))
        cpu = cpuxml.host_model(xml)
        if cpu is None:
            raise HostError(f"host {self.name}: the hypervisor describes no host CPU for "
                            f"{domain_type} guests (no host-model CPU)")
        return cpu

    def vm_cpu(self, name: str) -> str | None:
        dom = self._domain(name)
        xml = self._call(f"VM {name}", partial(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        return domxml.cpu_definition(xml)

    def cpu_functions(self, domain_type: str) -> CpuFunctions:
        return HypervisorCpu(self._conn, self.name, domain_type)

    def interface_link(self, name: str) -> LinkFacts | None:
        try:
            iface = self._conn.interfaceLookupByName(name)
            root = ET.fromstring(iface.XMLDesc(0))
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
                return None
            raise translate(err, f"host {self.name}: interface {name}") from err
        link = root.find("link")
        mtu = root.find("mtu")
        speed = link.get("speed") if link is not None else None
        return LinkFacts(
            interface=name,
            up=link is None or link.get("state", "up") == "up",
            speed_mbps=int(speed) if speed and speed.isdigit() else None,
            mtu=int(mtu.get("size", "0")) if mtu is not None else None,
        )

    def block_jobs(self, name: str) -> list[str]:
        dom = self._domain(name)
        root = ET.fromstring(self._call(f"VM {name}", lambda: dom.XMLDesc(0)))
        targets = [t.get("dev", "") for t in root.findall("devices/disk/target")]
        return [dev for dev in targets if self.block_job(name, dev) is not None]

    def probe_peer(self, peer_uri: str, probe_name: str) -> Reachability:
        # An offline peer-to-peer migration of an empty definition: this host's
        # libvirtd opens the same TLS connection to the peer that a live
        # migration opens, and nothing runs anywhere.
        xml = (f"<domain type='qemu'><name>{escape(probe_name)}</name>"
               "<memory unit='MiB'>16</memory><os><type arch='x86_64'>hvm</type></os>"
               "</domain>")
        dom = self._call("define reachability probe", lambda: self._conn.defineXML(xml))
        flags = (libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PEER2PEER
                 | libvirt.VIR_MIGRATE_PERSIST_DEST)
        try:
            dom.migrateToURI3(peer_uri, {}, flags)
            return Reachability(True, f"{self.name} reached {peer_uri}")
        except libvirt.libvirtError as err:
            return Reachability(False, err.get_error_message() or str(err))
        finally:
            try:
                dom.undefine()
            except libvirt.libvirtError:
                pass  # already gone

    def alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    def on_close(self, callback: CloseCallback) -> None:
        def closed(_conn: Any, reason: int, _opaque: Any) -> None:
            callback(_CLOSE_REASONS.get(reason, f"closed (libvirt reason {reason})"))

        self._call("watch the connection", lambda: self._conn.registerCloseCallback(closed, None))
        self._close_watched = True

    def close(self) -> None:
        if self._close_watched:
            self._close_watched = False
            try:
                self._conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass  # the connection is already gone
        for cid in self._callbacks:
            try:
                self._conn.domainEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass  # already gone with the connection
        self._callbacks.clear()
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass  # closing a dead connection is not an error worth raising


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def open_host(name: str, uri: str) -> LibvirtHost:
    return LibvirtHost(name, uri)

"""The real :class:`~ferry.virt.base.HostConnection`: libvirt over TLS (or SSH).

This is the only module of ferry that imports libvirt. Every libvirt error is
translated here into :mod:`ferry.errors`, so nothing above this line needs to
know libvirt's error codes.
"""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

import libvirt

from ferry import config
from ferry.checks.facts import CpuFeatures, CpuVerdict, LinkFacts, Reachability
from ferry.errors import (
    ConfigError,
    FerryError,
    HostError,
    HostUnreachable,
    MigrationCancelled,
    NotFound,
    VirtError,
)
from ferry.model import VM, MigrationSide, Network, Pool, VMState
from ferry.virt import cpuxml, domxml
from ferry.virt.base import (
    BlockJob,
    CloseCallback,
    CpuFunctions,
    GuestPlatform,
    HostFacts,
    ImageInfo,
    IterationCallback,
    LifecycleCallback,
    MigrationOptions,
    MigrationStats,
)

T = TypeVar("T")

_UNREACHABLE_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
}

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


def _ignore_libvirt_stderr(_ctx: object, _err: object) -> None:
    # libvirt prints every error to stderr by default; ferry reports them itself.
    return None


libvirt.registerErrorHandler(_ignore_libvirt_stderr, None)


def translate(err: libvirt.libvirtError, what: str) -> Exception:
    code = err.get_error_code()
    message = f"{what}: {err.get_error_message() or err}"
    if code == libvirt.VIR_ERR_OPERATION_ABORTED:
        return MigrationCancelled(message)
    if code in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL,
                libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_NETWORK):
        return NotFound(message)
    if code in _UNREACHABLE_CODES or err.get_error_domain() == libvirt.VIR_FROM_RPC:
        return HostUnreachable(message)
    return VirtError(message, code)


@contextmanager
def _libvirt_call(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as err:
        raise translate(err, what) from err


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


STREAM_CHUNK = 4 * 2**20  # bytes asked of a volume stream at a time

class LibvirtHost:
    """One host's libvirtd, reached by URI."""

    def __init__(self, name: str, uri: str) -> None:
        _ensure_event_loop()
        self.name = name
        self.uri = uri
        with _libvirt_call(f"cannot connect to host {name} at {uri}"):
            self._conn: Any = libvirt.open(connection_uri(uri))
        with _libvirt_call(f"host {name}: keepalive"):
            self._conn.setKeepAlive(5, 3)
        self._callbacks: list[int] = []
        self._close_watched = False

    # -- helpers ---------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with _libvirt_call(f"host {self.name}: {what}"):
            return fn()

    def _domain(self, name: str) -> Any:
        return self._call(f"VM {name}", lambda: self._conn.lookupByName(name))

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

    # -- storage ---------------------------------------------------------
    def _pool(self, name: str) -> Any:
        return self._call(f"datastore {name}", lambda: self._conn.storagePoolLookupByName(name))

    def refresh_pool(self, pool: str) -> None:
        handle = self._pool(pool)
        self._call(f"refresh datastore {pool}", lambda: handle.refresh(0))

    def create_volume(self, pool: str, name: str, capacity: int, fmt: str,
                      preallocation: str | None = None) -> str:
        handle = self._pool(pool)
        # libvirt reserves (fallocate) a raw file when allocation equals capacity.
        allocation = int(capacity) if preallocation else 0
        xml = (
            f"<volume><name>{escape(name)}</name><capacity unit='B'>{int(capacity)}</capacity>"
            f"<allocation unit='B'>{allocation}</allocation>"
            f"<target><format type='{escape(fmt)}'/></target></volume>"
        )
        vol = self._call(f"create volume {name} in {pool}", lambda: handle.createXML(xml, 0))
        if preallocation == "full":
            # Zero-wiping a fully allocated file writes every block (libvirt only
            # truncates a sparse one), which is what "eagerly zeroed" means.
            try:
                self._call(f"zero volume {name} in {pool}", lambda: vol.wipePattern(
                    libvirt.VIR_STORAGE_VOL_WIPE_ALG_ZERO, 0))
            except FerryError:
                self._call(f"delete volume {name}", lambda: vol.delete(0))
                raise
        return str(vol.path())

    def find_volume(self, pool: str, name: str) -> str | None:
        handle = self._pool(pool)
        self._call(f"refresh datastore {pool}", lambda: handle.refresh(0))
        try:
            vol = self._call(f"volume {name}", lambda: handle.storageVolLookupByName(name))
        except NotFound:
            return None
        return str(vol.path())

    def delete_volume(self, pool: str, name: str) -> None:
        handle = self._pool(pool)
        vol = self._call(f"volume {name}", lambda: handle.storageVolLookupByName(name))
        self._call(f"delete volume {name}", lambda: vol.delete(0))

    # -- lifecycle -------------------------------------------------------
    def define_vm(self, domain_xml: str) -> None:
        self._call("define VM", lambda: self._conn.defineXML(domain_xml))

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

    def _job_stats(self, name: str, flags: int) -> MigrationStats | None:
        try:
            dom = self._domain(name)
            raw = self._call(f"job statistics of {name}", lambda: dom.jobStats(flags))
        except NotFound:
            return None
        if not raw or raw.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return MigrationStats.from_job_stats(raw)

    def migration_stats(self, name: str) -> MigrationStats | None:
        try:
            dom = self._domain(name)
            raw = self._call(f"job statistics of {name}", lambda: dom.jobStats(0))
        except NotFound:
            return None
        # Just after an abort or a failure libvirt 9.0 still answers for a moment, with
        # type "cancelled" or "failed" and every counter 0 (QEMU drops its RAM counters
        # then): that is no sample of the copy.
        if (raw or {}).get("type") not in (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                                           libvirt.VIR_DOMAIN_JOB_UNBOUNDED):
            return None
        return MigrationStats.from_job_stats(raw)

    def completed_migration_stats(self, name: str) -> MigrationStats | None:
        return self._job_stats(name, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)

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
        return _HypervisorCpu(self._conn, self.name, domain_type)

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

    # -- storage migration ---------------------------------------------
    def volume_size(self, path: str) -> tuple[int, int]:
        vol = self._volume(path)
        info = self._call(f"volume {path}", vol.info)
        return int(info[1]), int(info[2])

    def _volume(self, path: str) -> Any:
        return self._call(f"volume {path}", lambda: self._conn.storageVolLookupByPath(path))

    def reserve_volume(self, path: str) -> None:
        vol = self._volume(path)
        capacity = int(self._call(f"volume {path}", vol.info)[1])
        # Resizing to the same size with ALLOCATE fallocates the holes, data untouched.
        self._call(f"reserve the space of {path}", partial(
            vol.resize, capacity, libvirt.VIR_STORAGE_VOL_RESIZE_ALLOCATE))

    def volume_file_size(self, path: str) -> int:
        vol = self._volume(path)
        info = self._call(f"volume {path}", partial(
            vol.infoFlags, libvirt.VIR_STORAGE_VOL_GET_PHYSICAL))
        return int(info[2])

    def image_info(self, path: str) -> ImageInfo | None:
        try:
            vol = self._volume(path)
        except NotFound:
            # A file made outside libvirt shows only after its pool is refreshed.
            for pool in self._call("list pools", lambda: self._conn.listAllStoragePools(
                    libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)):
                folder = domxml.pool_path(self._call("pool definition", partial(pool.XMLDesc, 0)))
                if folder and path.startswith(folder.rstrip("/") + "/"):
                    self._call(f"refresh datastore {pool.name()}", partial(pool.refresh, 0))
            try:
                vol = self._volume(path)
            except NotFound:
                return None
        return domxml.parse_volume(self._call(f"volume {path}", partial(vol.XMLDesc, 0)))

    def clone_volume(self, source_path: str, source_format: str, pool: str, name: str,
                     fmt: str, preallocation: str | None = None) -> str:
        image = self.image_info(source_path)
        if image is None:
            raise VirtError(f"host {self.name}: {source_path} is on no datastore")
        # libvirt converts in the format it reads the bytes as, following any backing
        # file it finds: convert only what it reads as the definition declares.
        if image.read_as != source_format:
            raise VirtError(f"host {self.name}: {source_path} is declared {source_format} "
                            f"but its bytes read as {image.read_as}; ferry converts an image "
                            "only in its declared format")
        if image.backing is not None:
            raise VirtError(f"host {self.name}: {source_path} has a backing file "
                            f"({image.backing}); ferry converts single images only")
        source = self._volume(source_path)
        handle = self._pool(pool)
        capacity = int(self._call(f"volume {source_path}", source.info)[1])
        allocation = capacity if preallocation else 0
        xml = (f"<volume><name>{escape(name)}</name><capacity unit='B'>{capacity}</capacity>"
               f"<allocation unit='B'>{allocation}</allocation>"
               f"<target><format type='{escape(fmt)}'/></target></volume>")
        # For a dir pool libvirt runs 'qemu-img convert -f SRC -O DST' when the formats
        # differ, and a sparse-aware copy when both are raw.
        vol = self._call(f"copy {source_path} to {name} in {pool}",
                         lambda: handle.createXMLFrom(xml, source, 0))
        return str(vol.path())

    @contextmanager
    def _volume_stream(self, path: str, start: Callable[[Any], Any], what: str) -> Iterator[Any]:
        """A stream on the volume at ``path``, finished on success and aborted otherwise."""
        stream = self._call("open a stream", lambda: self._conn.newStream(0))
        self._call(f"{what} {path}", lambda: start(stream))
        done = False
        try:
            yield stream
            self._call(f"{what} {path}", stream.finish)
            done = True
        finally:
            if not done:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass  # the stream already failed

    def read_volume(self, path: str) -> Generator[bytes | int, None, None]:
        vol = self._volume(path)
        what = "read volume"
        with self._volume_stream(path, lambda stream: vol.download(
                stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM), what) as stream:
            while True:
                got = self._call(f"{what} {path}", partial(
                    stream.recvFlags, STREAM_CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE))
                if got == -3:  # a hole: its length, not its zeros, crosses the wire
                    yield int(self._call(f"{what} {path}", stream.recvHole))
                    continue
                if isinstance(got, int):
                    raise VirtError(f"host {self.name}: reading {path} failed ({got})")
                if not got:
                    break
                yield got

    def write_volume(self, path: str, chunks: Iterable[bytes | int]) -> None:
        vol = self._volume(path)
        what = "write volume"
        with self._volume_stream(path, lambda stream: vol.upload(
                stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM), what) as stream:
            for chunk in chunks:
                if isinstance(chunk, int):
                    self._call(f"{what} {path}", partial(stream.sendHole, chunk, 0))
                    continue
                left = chunk
                while left:
                    sent = self._call(f"{what} {path}", partial(stream.send, left))
                    left = left[sent:]

    def disk_size(self, name: str, disk: str) -> tuple[int, int]:
        dom = self._domain(name)
        # blockInfo reads a powered-off VM's files too, and covers block devices.
        info = self._call(f"disk {disk} of {name}", partial(dom.blockInfo, disk, 0))
        return int(info[0]), int(info[1])

    def block_copy(self, name: str, disk: str, dest_path: str, dest_format: str,
                   synchronous: bool) -> None:
        dom = self._domain(name)
        xml = (f"<disk type='file'><driver type='{escape(dest_format)}'/>"
               f"<source file={quoteattr(dest_path)}/></disk>")
        # REUSE_EXT: ferry created the target in the datastore's pool itself.
        # TRANSIENT_JOB: libvirt refuses a copy job on a persistent VM otherwise;
        # ferry updates the persistent definition after the pivot.
        flags = (libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
                 | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
        if synchronous:
            flags |= libvirt.VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES
        self._call(f"copy disk {disk} of {name}", lambda: dom.blockCopy(disk, xml, {}, flags))

    def block_job(self, name: str, disk: str) -> BlockJob | None:
        dom = self._domain(name)
        info = self._call(f"block job on {disk} of {name}", partial(dom.blockJobInfo, disk, 0))
        if not info:
            return None
        return BlockJob(int(info.get("cur", 0)), int(info.get("end", 0)))

    def pivot_block_copy(self, name: str, disk: str) -> None:
        dom = self._domain(name)
        self._call(f"switch {name} to the copy of {disk}", partial(
            dom.blockJobAbort, disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT))

    def cancel_block_copy(self, name: str, disk: str) -> None:
        dom = self._domain(name)
        self._call(f"cancel the copy of {disk} of {name}", partial(dom.blockJobAbort, disk, 0))

    def saved_definition(self, name: str, disks: dict[str, tuple[str, str]]) -> str:
        dom = self._domain(name)
        xml = self._call(f"VM {name}", partial(
            dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
        try:
            return domxml.retarget_disks(xml, disks)
        except KeyError as err:
            raise VirtError(f"host {self.name}: VM {name} has no disk {err.args[0]}") from None

    def set_persistent_disk(self, name: str, disk: str, path: str, fmt: str) -> None:
        self.define_vm(self.saved_definition(name, {disk: (path, fmt)}))

    def block_device_present(self, path: str) -> bool:
        # libvirt has no "stat this path" call; a device is visible to it as a
        # volume of a pool on its folder: an existing pool if there is one
        # (libvirt refuses a second pool on the same folder), else a throw-away one.
        directory, _, name = path.rpartition("/")
        for pool in self._call("list pools", lambda: self._conn.listAllStoragePools(
                libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)):
            if domxml.pool_path(self._call("pool definition", partial(pool.XMLDesc, 0))) \
                    == directory:
                return self.find_volume(pool.name(), name) is not None
        probe_name = f"ferry-probe-{uuid.uuid4().hex[:12]}"
        xml = (f"<pool type='dir'><name>{probe_name}</name>"
               f"<target><path>{escape(directory)}</path></target></pool>")
        try:
            probe = self._conn.storagePoolCreateXML(xml, 0)
        except libvirt.libvirtError:
            return False  # no such folder on this host
        try:
            return self.find_volume(probe_name, name) is not None
        finally:
            try:
                probe.destroy()
            except libvirt.libvirtError:
                pass  # a transient pool that is already gone

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


class _HypervisorCpu:
    """libvirt's CPU functions as one host's hypervisor knows its CPU models."""

    def __init__(self, conn: Any, host: str, domain_type: str) -> None:
        self._conn = conn
        self._host = host
        self._domain_type = domain_type

    def _baseline(self, what: str, cpu_xmls: Sequence[str], flags: int) -> str:
        with _libvirt_call(f"host {self._host}: {what}"):
            return str(self._conn.baselineHypervisorCPU(
                None, "x86_64", None, self._domain_type, list(cpu_xmls), flags))

    def expand_cpu(self, cpu_xml: str) -> CpuFeatures:
        return cpuxml.expanded(self._baseline(
            "expand CPU model", [cpu_xml], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES))

    def baseline_cpu(self, cpu_xmls: Sequence[str]) -> str:
        return self._baseline("CPU baseline", cpu_xmls,
                              libvirt.VIR_CONNECT_BASELINE_CPU_MIGRATABLE)


class CpuCatalog:
    """libvirt's CPU map without a hypervisor (the host-CPU API), over any connection.

    It knows every model and vendor libvirt knows, but not what a hypervisor
    can run, so its baseline keeps non-migratable features. ferry judges
    hosts with :class:`LibvirtHost`; this serves where there is no host to
    ask, such as checking EVC rules against recorded CPU descriptions.
    """

    def __init__(self, uri: str = "test:///default") -> None:
        with _libvirt_call(f"cannot open {uri}"):
            self._conn: Any = libvirt.open(uri)

    def expand_cpu(self, cpu_xml: str) -> CpuFeatures:
        with _libvirt_call("expand CPU model"):
            return cpuxml.expanded(self._conn.baselineCPU(
                [cpuxml.as_host_cpu(cpu_xml)], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES))

    def baseline_cpu(self, cpu_xmls: Sequence[str]) -> str:
        with _libvirt_call("CPU baseline"):
            return str(self._conn.baselineCPU([cpuxml.as_host_cpu(x) for x in cpu_xmls], 0))

    def close(self) -> None:
        self._conn.close()

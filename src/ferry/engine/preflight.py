"""Gathering the facts the pre-flight checks judge: the IO half of ``ferry check``.

Each fact comes from the host that owns it: the destination judges the VM's
CPU, the source probes its path to the destination, each host reports its own
migration interface. A fact that cannot be had stays ``None`` and the check
reports it as not verified.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ferry.checks.facts import (
    LAYERED_FORMATS,
    CpuVerdict,
    EvcFit,
    HostSettings,
    ImageFacts,
    LinkFacts,
    MigrationTls,
    MoveKind,
    MoveRequest,
    PreflightFacts,
    Reachability,
)
from ferry.errors import FerryError, NotFound
from ferry.model import VM, Cluster, Host, Inventory, VMState
from ferry.virt.base import HostConnection, ImageInfo

# A chain deeper than this is refused as unreadable rather than walked on (a loop of
# files naming each other would otherwise never end).
MAX_CHAIN_DEPTH = 32

REACHABILITY_TTL_S = 30.0  # a path that worked half a minute ago is still the best evidence
# A host's TLS set-up is files an admin changes rarely, and reading them costs a check
# a quarter of a second on a busy host; `ferry refresh` or a host setting reads it anew.
TLS_SETUP_TTL_S = 30.0
REACHABILITY_TIMEOUT_S = 8.0


def committed(inventory: Inventory, host: str, exclude: str) -> tuple[int, int]:
    """(MiB, vCPUs) of the VMs running on ``host``, leaving out the one being moved."""
    running = [vm for vm in inventory.vms_on(host)
               if vm.name != exclude and vm.state is not VMState.SHUTOFF]
    return sum(vm.memory_mib for vm in running), sum(vm.vcpus for vm in running)


@dataclass(frozen=True)
class SourceFacts:
    """The facts of a move read from the VM's own host (the same for every destination)."""

    block_jobs: tuple[str, ...] = ()
    disk_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    images: dict[str, ImageFacts] = field(default_factory=dict)


@dataclass
class FactGatherer:
    conn: Callable[[str], HostConnection]
    # (running VM, destination, clusters read once or None: read now) -> how its CPU fits
    # the destination's EVC mode, if any
    evc_fit: Callable[[VM, str, list[Cluster] | None], EvcFit | None] = (
        lambda _vm, _dest, _clusters: None)
    _reach_cache: dict[tuple[str, str], tuple[float, Reachability]] = field(default_factory=dict)
    _tls_cache: dict[str, tuple[float, MigrationTls]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def gather(self, inventory: Inventory, vm: VM, request: MoveRequest,
               migrations_running: dict[str, int], source_facts: SourceFacts | None = None,
               clusters: list[Cluster] | None = None) -> PreflightFacts:
        """The facts of one move. ``source_facts`` and ``clusters``, read once, let a VM
        be judged against many hosts from one snapshot (``MoveStarter.judge_each``)."""
        source = vm.host
        dest = request.destination(vm.host)
        hosts = {source, dest}
        settings = {h: HostSettings.of(inventory.hosts[h]) for h in hosts if h in inventory.hosts}
        live_host_move = request.kind in (MoveKind.HOST, MoveKind.BOTH) and dest != source
        cpu: CpuVerdict | None = None
        reach: Reachability | None = None
        evc: EvcFit | None = None
        tls: dict[str, MigrationTls] = {}
        if live_host_move:
            cpu = self._cpu(dest, vm)
            evc = self.evc_fit(vm, dest, clusters)
            reach = self.reachability(source, dest, inventory.hosts[dest].uri)
            for host in (source, dest):
                found = self.migration_tls(host)
                if found is not None:  # else not verified: the check says so
                    tls[host] = found
        links: dict[str, LinkFacts] = {}
        for host in sorted(hosts):
            link = self._link(host, settings.get(host))
            if link is not None:
                links[host] = link
        block_devices: dict[str, bool] = {}
        if request.kind in (MoveKind.HOST, MoveKind.BOTH, MoveKind.COLD) and dest != source:
            for disk in vm.disks:
                if disk.source_type == "block" and disk.source and disk.device in ("disk", "lun"):
                    try:
                        block_devices[disk.source] = self.conn(dest).block_device_present(
                            disk.source)
                    except FerryError:
                        continue  # not verified: the check says so
        own = source_facts if source_facts is not None else self.source_facts(vm, request)
        memory: dict[str, int] = {}
        vcpus: dict[str, int] = {}
        for host in hosts:
            memory[host], vcpus[host] = committed(inventory, host, vm.name)
        source_host, dest_host = inventory.hosts.get(source), inventory.hosts.get(dest)
        return PreflightFacts(
            inventory=inventory,
            vm=vm,
            request=request,
            settings=settings,
            cpu=cpu,
            source_cpu_signature=_signature(source_host),
            dest_cpu_signature=_signature(dest_host),
            reachability=reach,
            links=links,
            block_devices_on_dest=block_devices,
            block_jobs=own.block_jobs,
            disk_sizes=dict(own.disk_sizes),
            migrations_running=dict(migrations_running),
            migration_tls=tls,
            memory_committed_mib=memory,
            vcpus_committed=vcpus,
            evc=evc,
            images=dict(own.images),
        )

    def source_facts(self, vm: VM, request: MoveRequest) -> SourceFacts:
        """What the VM's own host tells about it: the same whatever the destination."""
        source = vm.host
        block_jobs: tuple[str, ...] = ()
        if vm.state is VMState.RUNNING:
            try:
                block_jobs = tuple(self.conn(source).block_jobs(vm.name))
            except FerryError:
                block_jobs = ()
        disk_sizes: dict[str, tuple[int, int]] = {}
        if request.dest_datastore is not None:
            for disk in vm.disks:
                if disk.device not in ("disk", "lun") or disk.source is None:
                    continue
                try:
                    disk_sizes[disk.target] = self.conn(source).disk_size(vm.name, disk.target)
                except FerryError:
                    continue  # not verified: the check says so
        images: dict[str, ImageFacts] = {}
        for disk in vm.disks:
            if disk.source is None or disk.source_type not in ("file", "volume"):
                continue
            try:
                images[disk.source] = read_image(self.conn(source).image_info, disk.source,
                                                 disk.driver_format or "raw")
            except FerryError:
                continue  # not verified: the check says so
        return SourceFacts(block_jobs, disk_sizes, images)

    def _cpu(self, dest: str, vm: VM) -> CpuVerdict | None:
        if not vm.cpu_xml or vm.cpu_mode == "host-passthrough":
            return None  # passthrough is judged by comparing the two host CPUs
        try:
            return self.conn(dest).compare_cpu(vm.domain_type, vm.cpu_xml)
        except FerryError:
            return None

    def _link(self, host: str, settings: HostSettings | None) -> LinkFacts | None:
        if settings is None or not settings.migration_interface:
            return None
        try:
            return self.conn(host).interface_link(settings.migration_interface)
        except FerryError:
            return None

    def reachability(self, source: str, dest: str, dest_uri: str) -> Reachability:
        """The source's libvirtd reaching the destination's, cached for a short while."""
        with self._lock:
            cached = self._reach_cache.get((source, dest))
        if cached is not None and time.monotonic() - cached[0] < REACHABILITY_TTL_S:
            return cached[1]
        result = self._probe(source, dest, dest_uri)
        with self._lock:
            self._reach_cache[(source, dest)] = (time.monotonic(), result)
        return result

    def migration_tls(self, host: str) -> MigrationTls | None:
        """The host's TLS migration set-up, read a short while ago at most; None: unread."""
        with self._lock:
            cached = self._tls_cache.get(host)
        if cached is not None and time.monotonic() - cached[0] < TLS_SETUP_TTL_S:
            return cached[1]
        try:
            found = self.conn(host).migration_tls()
        except FerryError:
            return None
        with self._lock:
            self._tls_cache[host] = (time.monotonic(), found)
        return found

    def forget(self, host: str | None = None) -> None:
        """Probe again next time: every path, and ``host``'s set-up (None: every host's)."""
        with self._lock:
            self._reach_cache.clear()
            if host is None:
                self._tls_cache.clear()
            else:
                self._tls_cache.pop(host, None)

    def _probe(self, source: str, dest: str, dest_uri: str) -> Reachability:
        name = f"ferry-reach-{uuid.uuid4().hex[:12]}"
        answer: list[Reachability] = []

        def probe() -> None:
            try:
                answer.append(self.conn(source).probe_peer(dest_uri, name))
            except FerryError as err:
                answer.append(Reachability(False, err.message))
            finally:
                self._remove_probe(dest, name)

        # A dropped route can leave a TCP connect hanging for minutes; the
        # report must not, so the probe gets a deadline and finishes alone.
        worker = threading.Thread(target=probe, name=f"reach-{source}-{dest}", daemon=True)
        worker.start()
        worker.join(REACHABILITY_TIMEOUT_S)
        if answer:
            return answer[0]
        return Reachability(False, f"no answer from {dest_uri} within "
                                   f"{REACHABILITY_TIMEOUT_S:.0f} s")

    def _remove_probe(self, dest: str, name: str) -> None:
        try:
            self.conn(dest).undefine_vm(name)
        except NotFound:
            pass  # the probe never arrived
        except FerryError:
            pass  # the destination is unreachable from here too; nothing was left there


def read_image(image_info: Callable[[str], ImageInfo | None], path: str,
               declared_format: str) -> ImageFacts:
    """A disk's image and every file behind it, read from the images on its host.

    Each file is read as the format declared for it: the disk's by its definition,
    a backing file's by the header of the image in front of it. A chain is walked
    only through layered formats (a raw disk is its bytes, whatever they look like)
    and only where the host's storage reads a file as declared: the host guesses a
    format from the bytes, and a guess that differs (a raw file whose bytes spell
    a qcow2 header) decides nothing, it stops the walk. The walk also stops at a
    backing file of no declared format, and at a file no datastore of the host
    holds: ferry does not read such a file, it refuses the move.
    """
    top = image_info(path)
    read_as = top.read_as if top is not None else None
    if top is None or declared_format not in LAYERED_FORMATS:
        return ImageFacts(path, read_as)
    chain: list[str] = []
    current, fmt = top, declared_format
    while True:
        if current.read_as != fmt:
            return ImageFacts(path, read_as, tuple(chain),
                              f"{current.path} is declared {fmt} but its bytes read as "
                              f"{current.read_as}")
        if not current.backing:
            return ImageFacts(path, read_as, tuple(chain))
        if current.backing in chain or current.backing == path:
            return ImageFacts(path, read_as, tuple(chain),
                              f"{current.path} names {current.backing} again (a loop)")
        chain.append(current.backing)
        if current.backing_format is None:
            return ImageFacts(path, read_as, tuple(chain),
                              f"{current.path} does not declare the format of its backing "
                              f"file {current.backing}")
        if current.backing_format not in LAYERED_FORMATS:
            return ImageFacts(path, read_as, tuple(chain))  # a raw file ends the chain
        if len(chain) > MAX_CHAIN_DEPTH:
            return ImageFacts(path, read_as, tuple(chain),
                              f"more than {MAX_CHAIN_DEPTH} files deep")
        fmt = current.backing_format
        found = image_info(current.backing)
        if found is None:
            return ImageFacts(path, read_as, tuple(chain),
                              f"{chain[-1]} is on no datastore of the host")
        current = found


def _signature(host: Host | None) -> str | None:
    if host is None or not host.cpu_model:
        return None
    return f"{host.cpu_vendor} {host.cpu_model} {' '.join(host.cpu_features)}"

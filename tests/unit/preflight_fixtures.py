"""Hand-built pre-flight facts: a move where every requirement is met, to spoil one at a time.

host1 and host2 share datastore "shared" (pools "shared" and "nfs", proved the
same by probe); each has a local pool; host1 also has an empty pool "fast",
the target of storage moves.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ferry.checks.facts import (
    CpuVerdict,
    HostSettings,
    ImageFacts,
    LinkFacts,
    MigrationTls,
    MoveRequest,
    PreflightFacts,
    Reachability,
)
from ferry.checks.finding import Finding, Status
from ferry.checks.host import CLIENT_FILES, SERVER_FILES
from ferry.model import VM, Disk, Host, Interface, Inventory, Network, Pool, VMState

GIB = 2**30


def host(name: str, vendor: str = "Intel", cpus: int = 8, memory_mib: int = 16384) -> Host:
    return Host(name, f"qemu+tls://{name}/system", migration_address=f"198.18.0.{name[-1]}",
                cpu_vendor=vendor, cpus=cpus, memory_mib=memory_mib)


def pool(host: str, name: str, path: str, datastore: str, available: int = 100 * GIB,
         active: bool = True) -> Pool:
    return Pool(host, name, "dir", path, active, 200 * GIB, 0, available, datastore=datastore)


def net(host: str, name: str, forward: str | None = "bridge",
        portgroups: tuple[str, ...] = ("web",)) -> Network:
    return Network(host, name, "br0", forward, True, portgroups)


def vm(**changes: Any) -> VM:
    base = VM(
        name="web1", uuid="u1", host="host1", state=VMState.RUNNING, memory_kib=2 * 2**20,
        vcpus=2,
        disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),
               Disk("hdc", "cdrom", "file", "/srv/shared/iso/debian.iso", "raw", readonly=True)),
        interfaces=(Interface("52:54:00:00:00:01", "network", "Production", portgroup="web"),),
        cpu_mode="custom", cpu_model="Haswell",
    )
    return replace(base, **changes)


def inventory(**changes: Any) -> Inventory:
    base = Inventory(
        hosts={"host1": host("host1"), "host2": host("host2")},
        vms={},
        pools=(pool("host1", "shared", "/srv/shared", "shared"),
               pool("host2", "nfs", "/mnt/nfs", "shared"),
               pool("host1", "local", "/var/lib/local", "local@host1"),
               pool("host2", "local", "/var/lib/local", "local@host2"),
               pool("host1", "fast", "/srv/fast", "fast@host1")),
        networks=(net("host1", "Production"), net("host2", "Production")),
    )
    return replace(base, **changes)


def settings(host: str, **changes: Any) -> HostSettings:
    base = HostSettings(migration_address=f"198.18.0.{host[-1]}", migration_interface="eth1",
                        migration_network_isolated=True)
    return replace(base, **changes)


def link(**changes: Any) -> LinkFacts:
    return replace(LinkFacts("eth1", up=True, speed_mbps=10000, mtu=9000), **changes)


def tls_ready(*lacking: str, verify_clients: bool = True) -> MigrationTls:
    """A host's TLS migration set-up: every file QEMU wants but ``lacking``."""
    files = {*SERVER_FILES, *CLIENT_FILES} - set(lacking)
    return MigrationTls("/etc/pki/qemu", frozenset(files), verify_clients)


def facts(request: MoveRequest | None = None, **changes: Any) -> PreflightFacts:
    """Facts where every requirement of a live host move (or ``request``) is met."""
    the_vm = changes.pop("vm", vm())
    base = PreflightFacts(
        inventory=inventory(),
        vm=the_vm,
        request=request or MoveRequest(vm=the_vm.name, dest_host="host2"),
        settings={"host1": settings("host1"), "host2": settings("host2")},
        cpu=CpuVerdict(compatible=True),
        source_cpu_signature="Intel Xeon E5-2680 v3",
        dest_cpu_signature="Intel Xeon E5-2680 v3",
        reachability=Reachability(reachable=True),
        links={"host1": link(), "host2": link()},
        migration_tls={"host1": tls_ready(), "host2": tls_ready()},
        memory_committed_mib={"host1": 4096, "host2": 4096},
        vcpus_committed={"host1": 4, "host2": 4},
        disk_sizes={"vda": (20 * GIB, 5 * GIB)},
        images={"/srv/shared/web1.qcow2": ImageFacts("/srv/shared/web1.qcow2", "qcow2")},
    )
    return replace(base, **changes)


def storage_move(**changes: Any) -> MoveRequest:
    return replace(MoveRequest(vm="web1", dest_datastore="fast"), **changes)


def codes(findings: list[Finding], status: Status = Status.ERROR) -> list[str]:
    return [f.code for f in findings if f.status is status]


def only(findings: list[Finding], code: str) -> Finding:
    [found] = [f for f in findings if f.code == code]
    return found

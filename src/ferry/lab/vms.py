"""Creating a VM from the lab guest image on a host: volumes, then ferry-written domain XML.

The server plugs :class:`LabVMFactory` into the control plane when it runs the
lab; the engine itself knows nothing of the lab.

The guest boots a kernel and initramfs that the lab keeps as volumes on a
datastore; its workloads are chosen on the kernel command line. The files go
where the user chose a datastore; nothing here accepts a path from the user.
"""

from __future__ import annotations

import random

from ferry.errors import ConfigError, FerryError, InputError, NotFound
from ferry.lab import layout
from ferry.lab.guest import GuestWorkloads, guest_cmdline
from ferry.model import VM
from ferry.service import VMCreateRequest
from ferry.virt.base import HostConnection
from ferry.virt.domxml import DiskSpec, DomainSpec, NicSpec, build_domain_xml, with_cpu


def find_guest_image(conn: HostConnection, pools: list[str]) -> tuple[str, str]:
    """(kernel path, initrd path) from the first of ``pools`` that holds both volumes."""
    for pool in pools:
        kernel = conn.find_volume(pool, layout.GUEST_KERNEL_VOLUME)
        initrd = conn.find_volume(pool, layout.GUEST_INITRD_VOLUME)
        if kernel and initrd:
            return kernel, initrd
    raise ConfigError(
        f"host {conn.name} has no lab guest image ({layout.GUEST_KERNEL_VOLUME}, "
        f"{layout.GUEST_INITRD_VOLUME}) on any datastore; run 'ferry lab up'")


def next_lab_address(vms: list[VM]) -> str:
    used = {vm.lab_address for vm in vms}
    for index in range(1, 201):
        address = layout.guest_address(index)
        if address not in used:
            return address
    raise InputError("the lab's Production network has no free guest address left")


def random_mac() -> str:
    # 52:54:00 is QEMU's locally administered prefix; libvirt uses it too.
    tail = ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))
    return f"52:54:00:{tail}"


def require_network(conn: HostConnection, host: str, network: str, start: bool) -> None:
    """The VM's network exists on its host (and runs, if the VM is to start).

    libvirt defines a domain whose network does not exist and fails only when
    it starts, so without this a VM created with --no-start stays defined with
    a NIC on nothing; judged before anything is created on the host.
    """
    networks = {n.name: n for n in conn.list_networks()}
    found = networks.get(network)
    if found is None:
        raise NotFound(f"host {host} has no network named {network!r}; its networks: "
                       f"{', '.join(sorted(networks)) or 'none'}")
    if start and not found.active:
        raise InputError(f"network {network!r} on host {host} is not started: start it "
                         f"('virsh net-start {network}'), or create the VM with --no-start")


def create_lab_vm(
    conn: HostConnection, request: VMCreateRequest, image_pools: list[str],
    address: str, domain_type: str, cpu_xml: str | None = None,
) -> None:
    """Create the data disk, define the domain and (optionally) start it; undo on failure.

    ``cpu_xml``, an EVC mode's CPU, replaces the best model the host offers.
    """
    require_network(conn, request.host, request.network, request.start)
    kernel, initrd = find_guest_image(conn, image_pools)
    platform = conn.guest_platform(domain_type)
    if not platform.cpu_models:
        raise ConfigError(f"host {conn.name} offers no usable CPU model for {domain_type} guests")
    workloads = GuestWorkloads(
        heartbeat=request.heartbeat,
        memory_mib=request.memory_workload_mib,
        disk_writer=request.disk_writer and request.disk_mib > 0,
    )
    disks: tuple[DiskSpec, ...] = ()
    volume = f"{request.name}-disk0.{request.disk_format}"
    created = False
    try:
        if request.disk_mib > 0:
            path = conn.create_volume(request.datastore, volume, request.disk_mib * 2**20,
                                      request.disk_format)
            created = True
            disks = (DiskSpec(path=path, fmt=request.disk_format),)
        spec = DomainSpec(
            name=request.name,
            memory_mib=request.memory_mib,
            vcpus=request.vcpus,
            domain_type=domain_type,
            machine=platform.machine,
            cpu_model=platform.cpu_models[0],
            kernel=kernel,
            initrd=initrd,
            cmdline=guest_cmdline(request.name, address, workloads),
            disks=disks,
            nics=(NicSpec(network=request.network, mac=random_mac()),),
        )
        definition = build_domain_xml(spec)
        conn.define_vm(with_cpu(definition, cpu_xml) if cpu_xml else definition)
    except FerryError:
        if created:
            conn.delete_volume(request.datastore, volume)
        raise
    if request.start:
        try:
            conn.start_vm(request.name)
        except FerryError:
            conn.undefine_vm(request.name)
            if created:
                conn.delete_volume(request.datastore, volume)
            raise


class LabVMFactory:
    """Makes VMs from the lab's guest image (the control plane's VM factory)."""

    def create(self, conn: HostConnection, request: VMCreateRequest, image_pools: list[str],
               existing: list[VM], domain_type: str, cpu_xml: str | None) -> None:
        create_lab_vm(conn, request, image_pools, next_lab_address(existing), domain_type,
                      cpu_xml=cpu_xml)

"""A VM's own life: creation (by a plugged-in factory), power, deletion.

ferry creates VMs only where the server plugs in a :class:`VMFactory` (the
lab's guest image, today); powering and deleting work on any VM. Each action
rereads the VM from its host first and is refused while the VM is in a move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ferry import validate
from ferry.checks.finding import Finding, Status
from ferry.checks.storage import pool_holding
from ferry.engine.evc import EvcService
from ferry.engine.inventory import InventoryCache
from ferry.engine.vmindex import VMIndex
from ferry.errors import ConfigError, InputError, NotFound, RefusedError
from ferry.model import VM, Pool, VMState
from ferry.service import VMCreateRequest
from ferry.store.db import Store
from ferry.virt.base import HostConnection


class VMFactory(Protocol):
    """Defines (and starts) a new VM on a host; ferry writes its XML, never the user."""

    def create(self, conn: HostConnection, request: VMCreateRequest, image_pools: list[str],
               existing: list[VM], domain_type: str, cpu_xml: str | None) -> None: ...


class VMActions:
    def __init__(self, store: Store, inventory: InventoryCache, vms: VMIndex,
                 conn: Callable[[str], HostConnection], evc: EvcService,
                 guest_type_on: Callable[[str], str], factory: VMFactory | None) -> None:
        self._store = store
        self._inventory = inventory
        self._vms = vms
        self._conn = conn
        self._evc = evc
        self._guest_type_on = guest_type_on
        self._factory = factory

    def _refuse_if_in_maintenance(self, host: str, what: str) -> None:
        if self._store.host(host).maintenance:
            raise RefusedError(f"{what} refused: host {host} is in maintenance mode", [Finding(
                "host.maintenance", Status.ERROR, f"host {host} is in maintenance mode",
                remedy=f"choose another host, or 'ferry host maintenance exit {host}'",
                objects={"host": host})])

    def create(self, request: VMCreateRequest) -> VM:
        if self._factory is None:
            raise ConfigError("this ferry server creates no VMs: it has no guest image "
                              "(VM creation is the lab's; define VMs with your own tools)")
        validate.name("VM", request.name)
        self._inventory.refresh()
        if request.name in {vm.name for vm in self._vms.listed()}:
            raise InputError(f"a VM named {request.name} already exists")
        self._refuse_if_in_maintenance(request.host, f"creating {request.name}")
        conn = self._conn(request.host)
        pools = self._inventory.pools_on(request.host)
        if request.datastore not in {p.name for p in pools}:
            raise NotFound(f"host {request.host} has no datastore named {request.datastore}")
        evc = self._evc.mode_of_host(request.host)
        self._factory.create(conn, request, [p.name for p in pools], self._vms.listed(),
                             self._guest_type_on(request.host),
                             evc[1].cpu_xml if evc else None)
        self._inventory.refresh(request.host)
        return self._vms.get(request.name)

    def fresh(self, vm: VM, action: str) -> VM:
        """``vm`` reread from its host, refused if it is in a move as the host shows now."""
        self._vms.refuse_if_held(vm, action)
        fresh = self._conn(vm.host).get_vm(vm.name)
        if fresh is None:
            raise NotFound(f"VM {vm.name} is no longer on {vm.host}")
        self._vms.refuse_if_moving(fresh, action)
        return fresh

    def power(self, vm: str, action: str) -> VM:
        current = self._vms.get(vm)
        if action not in ("on", "off", "force-off"):
            raise InputError(f"unknown power action {action!r}: use on, off or force-off")
        current = self.fresh(current, f"power {action}")
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
        self._inventory.refresh_vms(current.host)
        return self._vms.get(current.uuid)

    def delete_vm(self, vm: str) -> None:
        current = self.fresh(self._vms.get(vm), "delete")
        conn = self._conn(current.host)
        pools = self._inventory.pools_on(current.host)
        delete_vm_and_disks(conn, current, pools)
        self._inventory.refresh_vms(current.host)


def delete_vm_and_disks(conn: HostConnection, vm: VM, pools: list[Pool]) -> None:
    """Power off, undefine, then delete the VM's disks that are volumes of a datastore.

    Only file-backed ``device='disk'`` disks are removed: kernels, initrds and
    ISOs may be shared by other VMs, a block device is a LUN ferry did not
    make, and a file outside every datastore is not ferry's.
    """
    if vm.state is not VMState.SHUTOFF:
        conn.destroy_vm(vm.name)
        # Read the disks again once it is off: a running VM's transient disk shows
        # its throw-away overlay, not the volume that belongs to the VM.
        vm = conn.get_vm(vm.name) or vm
    conn.undefine_vm(vm.name)
    for disk in vm.disks:
        if disk.device != "disk" or disk.source_type != "file" or not disk.source:
            continue  # block devices (RDMs) and media belong to the admin, not to the VM
        pool = pool_holding(pools, disk.source)
        if pool is not None:
            conn.delete_volume(pool.name, disk.source.rsplit("/", 1)[-1])

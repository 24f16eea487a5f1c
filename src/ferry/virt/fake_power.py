"""The fake host's definitions, power actions and block copies.

A VM has a live record (``vms``) and, when persistent, a saved definition
(``definitions``, domain XML) as on libvirt: a pivot changes the live disk, and
only :meth:`~FakePower.set_persistent_disk` the saved one. A block copy
copies the disk's bytes into the target when it starts and is ready after
``mirror_polls`` looks at it. Mixed into :class:`ferry.virt.fake.FakeHost`.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from ferry.errors import NotFound, VirtError
from ferry.model import VM, Disk, VMState
from ferry.virt import domxml
from ferry.virt.base import BlockJob, LifecycleCallback
from ferry.virt.fake_storage import FakeStorage, disk_of, image_file


def domain_xml(vm: VM) -> str:
    """A definition of ``vm`` with what ferry reads back: name, UUID, size, CPU, disks, NICs."""
    root = ET.Element("domain", type=vm.domain_type)
    ET.SubElement(root, "name").text = vm.name
    ET.SubElement(root, "uuid").text = vm.uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(vm.memory_kib)
    ET.SubElement(root, "vcpu").text = str(vm.vcpus)
    if vm.cpu_xml:
        root.append(ET.fromstring(vm.cpu_xml))
    devices = ET.SubElement(root, "devices")
    for disk in vm.disks:
        node = ET.SubElement(devices, "disk", type=disk.source_type, device=disk.device)
        if disk.driver_format:
            ET.SubElement(node, "driver", name="qemu", type=disk.driver_format)
        if disk.source:
            ET.SubElement(node, "source", {"dev" if disk.source_type == "block" else "file":
                                           disk.source})
        ET.SubElement(node, "target", dev=disk.target)
        if disk.readonly:
            ET.SubElement(node, "readonly")
    for nic in vm.interfaces:
        node = ET.SubElement(devices, "interface", type=nic.kind)
        ET.SubElement(node, "mac", address=nic.mac)
        if nic.network:
            ET.SubElement(node, "source", {"network" if nic.kind == "network" else "bridge":
                                           nic.network})
    return ET.tostring(root, encoding="unicode")


@dataclass
class _Copy:
    dest_path: str
    fmt: str
    end: int
    polls: int = 0


class FakePower(FakeStorage):
    """Definitions, power and block copies of the fake host's VMs."""

    definitions: dict[str, str]
    callbacks: list[LifecycleCallback]
    kicks: list[str]
    busy_disks: list[str]
    mirror_polls: int | None  # looks at a copy before it is ready; None: never ready
    _copies: dict[tuple[str, str], _Copy]

    def _emit(self, vm: str, event: str) -> None:
        for callback in self.callbacks:
            callback(self.name, vm, event)

    def _vm(self, name: str) -> VM:
        vm = self.vms.get(name)
        if vm is None:
            raise NotFound(f"host {self.name}: no VM named {name}")
        return vm

    def _set_state(self, name: str, want: tuple[VMState, ...], to: VMState, event: str) -> None:
        vm = self._vm(name)
        if vm.state not in want:
            raise VirtError(f"host {self.name}: VM {name} is {vm.state.value}")
        self.vms[name] = replace(vm, state=to)
        self._emit(name, event)

    # -- definitions -----------------------------------------------------
    def define_vm(self, domain_xml: str) -> None:
        self._fault("define_vm")
        try:
            root = ET.fromstring(domain_xml)
        except ET.ParseError as err:
            raise VirtError(f"host {self.name}: define VM: {err}") from None
        if not (root.findtext("uuid") or "").strip():
            ET.SubElement(root, "uuid").text = str(uuid.uuid4())
        xml = ET.tostring(root, encoding="unicode")
        new = domxml.parse_domain(xml, self.name, VMState.SHUTOFF)
        same_uuid = [vm.name for vm in self.vms.values() if vm.uuid == new.uuid]
        old = self.vms.get(new.name)
        if (old is not None and old.uuid != new.uuid) or same_uuid not in ([], [new.name]):
            raise VirtError(f"host {self.name}: VM {new.name} ({new.uuid}) clashes with "
                            "another VM's name or UUID")
        self.definitions[new.name] = xml
        if old is None or old.state is VMState.SHUTOFF:
            self.vms[new.name] = new
        else:  # as libvirt: a running VM keeps its live definition until it stops
            self.vms[new.name] = replace(old, persistent=True)
        self._emit(new.name, "defined")

    def undefine_vm(self, name: str) -> None:
        self._fault("undefine_vm")
        vm = self._vm(name)
        self.definitions.pop(name, None)
        if vm.state is VMState.SHUTOFF:
            del self.vms[name]
        else:
            self.vms[name] = replace(vm, persistent=False)
        self._emit(name, "undefined")

    def saved_definition(self, name: str, disks: dict[str, tuple[str, str]]) -> str:
        vm = self._vm(name)
        try:
            return domxml.retarget_disks(self.definitions.get(name) or domain_xml(vm), disks)
        except KeyError as err:
            raise VirtError(f"host {self.name}: VM {name} has no disk {err.args[0]}") from None

    # -- power -----------------------------------------------------------
    def start_vm(self, name: str) -> None:
        self._set_state(name, (VMState.SHUTOFF,), VMState.RUNNING, "started")

    def shutdown_vm(self, name: str) -> None:
        self.destroy_vm(name)

    def destroy_vm(self, name: str) -> None:
        vm = self._vm(name)
        if vm.state is VMState.SHUTOFF:
            raise VirtError(f"host {self.name}: VM {name} is not running")
        self._copies = {k: c for k, c in self._copies.items() if k[0] != name}
        if not vm.persistent:
            del self.vms[name]  # as libvirt: a transient domain is gone once it stops
        else:
            self.vms[name] = replace(vm, state=VMState.SHUTOFF)
        self._emit(name, "stopped")

    def suspend_vm(self, name: str) -> None:
        self._set_state(name, (VMState.RUNNING,), VMState.PAUSED, "suspended")
        self.kicks.append(name)

    def resume_vm(self, name: str) -> None:
        self._set_state(name, (VMState.PAUSED,), VMState.RUNNING, "resumed")

    # -- block copy ------------------------------------------------------
    def _disk(self, name: str, disk: str) -> Disk:
        for found in self._vm(name).disks:
            if found.target == disk:
                return found
        raise VirtError(f"host {self.name}: VM {name} has no disk {disk}")

    def block_copy(self, name: str, disk: str, dest_path: str, dest_format: str,
                   synchronous: bool) -> None:
        self._fault("block_copy")
        source = self._disk(name, disk)
        if self._vm(name).state is VMState.SHUTOFF:
            raise VirtError(f"host {self.name}: VM {name} is not running")
        if (name, disk) in self._copies:
            raise VirtError(f"host {self.name}: disk {disk} of {name} has a block job already")
        target = self._volume(dest_path)  # REUSE_EXT: the file must exist
        # QEMU mirrors the disk as it reads it: in the format the VM's definition declares.
        data = (disk_of(self._volume(source.source), source.driver_format or "raw")
                if source.source and self._place(source.source) is not None else None)
        capacity = data.size if data is not None else self.disk_bytes[0]
        if data is not None:
            copied = image_file(data, dest_format, target.reserved)
            target.size, target.blocks = copied.size, copied.blocks
        self._copies[(name, disk)] = _Copy(dest_path, dest_format, capacity)

    def block_job(self, name: str, disk: str) -> BlockJob | None:
        self._disk(name, disk)
        copy = self._copies.get((name, disk))
        if copy is None:
            return None
        copy.polls += 1
        ready = self.mirror_polls is not None and copy.polls > self.mirror_polls
        return BlockJob(copy.end if ready else copy.end // 2, copy.end)

    def _end_copy(self, name: str, disk: str) -> _Copy:
        self._disk(name, disk)
        copy = self._copies.pop((name, disk), None)
        if copy is None:
            raise VirtError(f"host {self.name}: no block job on disk {disk} of {name}")
        return copy

    def pivot_block_copy(self, name: str, disk: str) -> None:
        self._fault("pivot_block_copy")
        job = self.block_job(name, disk)
        if job is None or not job.ready:
            raise VirtError(f"host {self.name}: the copy of {disk} of {name} is not ready")
        copy = self._end_copy(name, disk)
        vm = self._vm(name)
        self.vms[name] = replace(vm, disks=tuple(
            replace(d, source_type="file", source=copy.dest_path, driver_format=copy.fmt)
            if d.target == disk else d for d in vm.disks))

    def cancel_block_copy(self, name: str, disk: str) -> None:
        self._end_copy(name, disk)

    def set_persistent_disk(self, name: str, disk: str, path: str, fmt: str) -> None:
        self._fault("set_persistent_disk")
        self.define_vm(self.saved_definition(name, {disk: (path, fmt)}))

    def block_jobs(self, name: str) -> list[str]:
        self._vm(name)
        return [*self.busy_disks, *(d for n, d in self._copies if n == name)]

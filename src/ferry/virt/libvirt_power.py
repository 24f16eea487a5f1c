"""VMs' definitions and power through libvirt.

Part of the libvirt seam (see :mod:`ferry.virt.libvirt_calls`): the calls of
:class:`~ferry.virt.seam.power.Power`, mixed into
:class:`ferry.virt.libvirt_host.LibvirtHost`.
"""

from __future__ import annotations

from functools import partial

import libvirt

from ferry.errors import VirtError
from ferry.virt import domxml
from ferry.virt.libvirt_calls import LibvirtCalls


class PowerCalls(LibvirtCalls):
    """Define, undefine, start and stop VMs of one host."""

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

    def saved_definition(self, name: str, disks: dict[str, tuple[str, str]]) -> str:
        dom = self._domain(name)
        xml = self._call(f"VM {name}", partial(
            dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
        try:
            return domxml.retarget_disks(xml, disks)
        except KeyError as err:
            raise VirtError(f"host {self.name}: VM {name} has no disk {err.args[0]}") from None

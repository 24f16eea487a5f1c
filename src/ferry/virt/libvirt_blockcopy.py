"""Block copy through libvirt: mirroring a running VM's disk into a file of ferry's.

Part of the libvirt seam (see :mod:`ferry.virt.libvirt_calls`): the calls of
:class:`~ferry.virt.seam.blockcopy.BlockCopy`, mixed into
:class:`ferry.virt.libvirt_host.LibvirtHost`.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from functools import partial

import libvirt

from ferry.virt import domxml
from ferry.virt.base import BlockJob
from ferry.virt.libvirt_calls import translate
from ferry.virt.libvirt_power import PowerCalls

PIVOT_READY_WAIT_S = 10.0  # how long libvirt may take to learn that a mirror is ready
PIVOT_RETRY_S = 0.05


class BlockCopyCalls(PowerCalls):
    """Mirrors of one host's VMs' disks, and the persistent definition after a pivot."""

    def block_copy(self, name: str, disk: str, dest_path: str, dest_format: str,
                   synchronous: bool) -> None:
        dom = self._domain(name)
        xml = domxml.copy_target_xml(dest_path, dest_format)
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
        what = f"host {self.name}: switch {name} to the copy of {disk}"
        deadline = time.monotonic() + PIVOT_READY_WAIT_S
        while True:
            try:
                dom.blockJobAbort(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                return
            except libvirt.libvirtError as err:
                # QEMU says the mirror is ready (cur == end) before libvirt has handled
                # its READY event, and libvirt refuses the pivot until it has: "block
                # job ... not ready for pivot yet". That passes in milliseconds.
                if err.get_error_code() != libvirt.VIR_ERR_BLOCK_COPY_ACTIVE \
                        or time.monotonic() > deadline:
                    raise translate(err, what) from err
            time.sleep(PIVOT_RETRY_S)

    def cancel_block_copy(self, name: str, disk: str) -> None:
        dom = self._domain(name)
        self._call(f"cancel the copy of {disk} of {name}", partial(dom.blockJobAbort, disk, 0))

    def set_persistent_disk(self, name: str, disk: str, path: str, fmt: str) -> None:
        self.define_vm(self.saved_definition(name, {disk: (path, fmt)}))

    def block_jobs(self, name: str) -> list[str]:
        dom = self._domain(name)
        root = ET.fromstring(self._call(f"VM {name}", lambda: dom.XMLDesc(0)))
        targets = [t.get("dev", "") for t in root.findall("devices/disk/target")]
        return [dev for dev in targets if self.block_job(name, dev) is not None]

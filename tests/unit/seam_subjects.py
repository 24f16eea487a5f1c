"""The two implementations of the seam the contract suite holds to the same promises.

``libvirt``: ferry's libvirt mixins on libvirt's in-process test driver
(``test:///default``: a fresh host at each open, with pool ``default-pool``,
running VM ``test``, network ``default`` and interface ``eth1``). ``fake``:
ferry's fake host, set up as the same host.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ferry.model import VM, Disk, Interface, VMState
from ferry.virt.base import HostConnection
from ferry.virt.fake import Backing, FakeHost, FakeWorld
from ferry.virt.libvirt_host import open_host

POOL = "default-pool"
VM_NAME = "test"
NETWORK = "default"
INTERFACE = "eth1"


@dataclass
class Subject:
    kind: str  # fake | libvirt
    conn: HostConnection

    def lacks(self, feature: str) -> None:
        """Skip on libvirt's test driver, which does not implement ``feature``."""
        if self.kind == "libvirt":
            pytest.skip(f"test:///default does not implement {feature}")


def fake_default_host() -> FakeHost:
    from ferry.checks.facts import LinkFacts

    host = FakeHost(FakeWorld(), "testhost", "6695eb01-0000-0000-0000-000000000000")
    host.add_pool(POOL, "/default-pool", Backing())
    host.add_network(NETWORK, "nat")
    host.links[INTERFACE] = LinkFacts(INTERFACE, True, None, 1492)
    host.add_vm(VM(name=VM_NAME, uuid="6695eb01-f6a4-8304-79aa-97f2502e193f", host="",
                   state=VMState.RUNNING, memory_kib=8 * 2**20, vcpus=2,
                   disks=(Disk("vda", "disk", "file", "/guest/diskimage1"),),
                   interfaces=(Interface("aa:bb:cc:dd:ee:ff", "network", NETWORK),)))
    return host


def open_subject(kind: str) -> Subject:
    if kind == "fake":
        return Subject(kind, fake_default_host())
    return Subject(kind, open_host("testhost", "test:///default"))


def domain(name: str, disk: str = "/default-pool/disk.img", fmt: str = "raw") -> str:
    """A definition both implementations accept (the test driver runs type 'test')."""
    return (f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='i686'>hvm</type></os><devices>"
            f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
            "</devices></domain>")

"""The one seam between ferry and hypervisors.

:class:`HostConnection` is everything ferry asks of a host: the capabilities of
:mod:`ferry.virt.seam` (inventory, power, volumes, migration, block copy, CPU,
probes) together. The real one, :mod:`ferry.virt.libvirt_host` (with its parts
``virt/libvirt_*.py``, the only modules that import libvirt), talks to libvirt;
the fake in :mod:`ferry.virt.fake` stands in for it in unit tests, and one
contract suite holds both to the same promises. Implementations raise only
:mod:`ferry.errors` exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ferry.virt.seam.blockcopy import BlockCopy
from ferry.virt.seam.cpu import Cpu, CpuFunctions
from ferry.virt.seam.data import (
    BlockJob,
    CloseCallback,
    DiskCopy,
    GuestPlatform,
    HostFacts,
    ImageInfo,
    IterationCallback,
    LifecycleCallback,
    MigrationOptions,
    MigrationStats,
)
from ferry.virt.seam.inventory import Inventory
from ferry.virt.seam.migration import Migration
from ferry.virt.seam.power import Power
from ferry.virt.seam.probes import Probes
from ferry.virt.seam.volumes import Volumes

__all__ = [
    "BlockCopy", "BlockJob", "CloseCallback", "Connector", "Cpu", "CpuFunctions", "DiskCopy",
    "GuestPlatform", "HostConnection", "HostFacts", "ImageInfo", "Inventory",
    "IterationCallback", "LifecycleCallback", "Migration", "MigrationOptions",
    "MigrationStats", "Power", "Probes", "Volumes",
]


class HostConnection(Inventory, Power, Volumes, Migration, BlockCopy, Cpu, Probes, Protocol):
    """Everything ferry asks of one host."""


Connector = Callable[[str, str], HostConnection]
"""Opens a connection: (host name, URI) -> HostConnection."""

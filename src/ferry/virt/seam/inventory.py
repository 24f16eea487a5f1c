"""Inventory: what a host is and what it holds (facts, VMs, datastores, networks)."""

from __future__ import annotations

from typing import Protocol

from ferry.model import VM, Network, Pool
from ferry.virt.seam.data import GuestPlatform, HostFacts
from ferry.virt.seam.named import Named


class Inventory(Named, Protocol):
    def facts(self) -> HostFacts: ...

    def guest_platform(self, domain_type: str = "qemu") -> GuestPlatform: ...

    def list_vms(self) -> list[VM]: ...

    def get_vm(self, name: str) -> VM | None:
        """VM ``name`` as the host shows it now; None when the host has no such VM."""
        ...

    def list_pools(self) -> list[Pool]: ...

    def list_networks(self) -> list[Network]: ...

"""CPU: a host's verdict on guest CPU definitions, and libvirt's CPU functions (EVC)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ferry.checks.facts import CpuFeatures, CpuVerdict
from ferry.virt.seam.named import Named


class CpuFunctions(Protocol):
    """libvirt's CPU functions: expand a definition, compute a common baseline."""

    def expand_cpu(self, cpu_xml: str) -> CpuFeatures:
        """The definition's model expanded into every feature it gives a guest."""
        ...

    def baseline_cpu(self, cpu_xmls: Sequence[str]) -> str:
        """A guest CPU definition all of ``cpu_xmls`` can run, migratable features only."""
        ...


class Cpu(Named, Protocol):
    def compare_cpu(self, domain_type: str, cpu_xml: str) -> CpuVerdict:
        """This host's own verdict on running a guest CPU definition."""
        ...

    def host_cpu(self, domain_type: str) -> str:
        """The most this host can give a ``domain_type`` guest, as a guest CPU definition."""
        ...

    def vm_cpu(self, name: str) -> str | None:
        """The CPU definition VM ``name`` runs with, as a migration carries it to a host.

        Not the live ``<cpu>``: libvirt adds there what the hypervisor gave
        beyond the model, which another host's model of the same name gives too.
        None when the definition names no CPU.
        """
        ...

    def cpu_functions(self, domain_type: str) -> CpuFunctions:
        """libvirt's CPU functions as this host's hypervisor knows them."""
        ...

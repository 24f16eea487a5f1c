"""libvirt's CPU functions: one host's hypervisor's, and libvirt's CPU map alone.

Part of the libvirt seam (see :mod:`ferry.virt.libvirt_calls`): the calls of
:class:`~ferry.virt.seam.cpu.Cpu`, mixed into :class:`ferry.virt.libvirt_host.LibvirtHost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import libvirt

from ferry.checks.facts import CpuFeatures, CpuVerdict
from ferry.errors import HostError
from ferry.virt import cpuxml, domxml
from ferry.virt.base import CpuFunctions
from ferry.virt.libvirt_calls import LibvirtCalls, libvirt_call, translate


class HypervisorCpu:
    """libvirt's CPU functions as one host's hypervisor knows its CPU models."""

    def __init__(self, conn: Any, host: str, domain_type: str) -> None:
        self._conn = conn
        self._host = host
        self._domain_type = domain_type

    def _baseline(self, what: str, cpu_xmls: Sequence[str], flags: int) -> str:
        with libvirt_call(f"host {self._host}: {what}"):
            return str(self._conn.baselineHypervisorCPU(
                None, "x86_64", None, self._domain_type, list(cpu_xmls), flags))

    def expand_cpu(self, cpu_xml: str) -> CpuFeatures:
        return cpuxml.expanded(self._baseline(
            "expand CPU model", [cpu_xml], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES))

    def baseline_cpu(self, cpu_xmls: Sequence[str]) -> str:
        return self._baseline("CPU baseline", cpu_xmls,
                              libvirt.VIR_CONNECT_BASELINE_CPU_MIGRATABLE)


class CpuCatalog:
    """libvirt's CPU map without a hypervisor (the host-CPU API), over any connection.

    It knows every model and vendor libvirt knows, but not what a hypervisor
    can run, so its baseline keeps non-migratable features. ferry judges
    hosts with :class:`LibvirtHost`; this serves where there is no host to
    ask, such as checking EVC rules against recorded CPU descriptions.
    """

    def __init__(self, uri: str = "test:///default") -> None:
        with libvirt_call(f"cannot open {uri}"):
            self._conn: Any = libvirt.open(uri)

    def expand_cpu(self, cpu_xml: str) -> CpuFeatures:
        with libvirt_call("expand CPU model"):
            return cpuxml.expanded(self._conn.baselineCPU(
                [cpuxml.as_host_cpu(cpu_xml)], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES))

    def baseline_cpu(self, cpu_xmls: Sequence[str]) -> str:
        with libvirt_call("CPU baseline"):
            return str(self._conn.baselineCPU([cpuxml.as_host_cpu(x) for x in cpu_xmls], 0))

    def close(self) -> None:
        self._conn.close()


class CpuCalls(LibvirtCalls):
    """One host's verdicts on guest CPU definitions, and its CPU functions."""

    def compare_cpu(self, domain_type: str, cpu_xml: str) -> CpuVerdict:
        try:
            result = self._conn.compareHypervisorCPU(
                None, "x86_64", None, domain_type, cpu_xml,
                libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_CPU_INCOMPATIBLE:
                raise translate(err, f"host {self.name}: compare CPU") from err
            detail = err.get_error_message() or str(err)
            return CpuVerdict(False, cpuxml.missing_features(detail), detail)
        return CpuVerdict(result != libvirt.VIR_CPU_COMPARE_INCOMPATIBLE)


    def host_cpu(self, domain_type: str) -> str:
        xml = self._call("domain capabilities", lambda: self._conn.getDomainCapabilities(
            None, "x86_64", None, domain_type, 0))
        cpu = cpuxml.host_model(xml)
        if cpu is None:
            raise HostError(f"host {self.name}: the hypervisor describes no host CPU for "
                            f"{domain_type} guests (no host-model CPU)")
        return cpu

    def vm_cpu(self, name: str) -> str | None:
        dom = self._domain(name)
        xml = self._call(f"VM {name}", partial(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        return domxml.cpu_definition(xml)

    def cpu_functions(self, domain_type: str) -> CpuFunctions:
        return HypervisorCpu(self._conn, self.name, domain_type)


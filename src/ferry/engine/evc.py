"""EVC on a cluster: computing a mode, asking hosts about it, giving it to VMs (the IO half).

The rules are pure (:mod:`ferry.checks.evc`); this module gathers what they
judge. Each host describes the most it can give a guest (libvirt's
host-model CPU for the guests' virtualization type) and its own libvirt
expands definitions into features, computes baselines (migratable features
only) and compares a mode with what it can run.

A mode is fixed when it is enabled: an ``auto`` mode is the baseline of the
hosts in the cluster then, so a host that joins later must support it, as
in vSphere, rather than lower it under VMs already running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from ferry import validate
from ferry.checks import evc as rules
from ferry.checks.facts import EvcFit
from ferry.checks.finding import Finding, errors
from ferry.errors import FerryError, InputError, RefusedError, VirtError
from ferry.model import VM, Cluster, EvcHostView, EvcMode, EvcReport, Inventory, VMState
from ferry.store.db import Store
from ferry.virt import cpuxml, domxml
from ferry.virt.base import HostConnection

AUTO = "auto"
# What QEMU gives an x86_64 guest whose definition names no CPU at all.
DEFAULT_GUEST_MODEL = "qemu64"
# CPU modes in which a guest sees its host's own CPU, whatever a mode says.
HOST_CPU_MODES = ("host-passthrough", "maximum")


class EvcService:
    """Enable, disable, show, and the EVC side of joins, starts and pre-flight."""

    def __init__(self, store: Store, conn: Callable[[str], HostConnection],
                 domain_type: Callable[[str], str]) -> None:
        self._store = store
        self._conn = conn
        self._domain_type = domain_type

    # -- looking up ------------------------------------------------------
    def mode_of_host(self, host: str,
                     clusters: list[Cluster] | None = None) -> tuple[str, EvcMode] | None:
        """(cluster, mode) when ``host`` is in a cluster with EVC on (of ``clusters``, as
        read once for many hosts, else as the store has them now)."""
        for cluster in self._store.clusters() if clusters is None else clusters:
            if host in cluster.hosts and cluster.evc is not None:
                return cluster.name, cluster.evc
        return None

    # -- asking hosts ------------------------------------------------------
    def _host_cpu(self, host: str, mode: EvcMode | None = None) -> rules.HostCpu:
        conn = self._conn(host)
        domain_type = self._domain_type(host)
        definition = conn.host_cpu(domain_type)
        cpu = conn.cpu_functions(domain_type).expand_cpu(definition)
        found = rules.HostCpu(host, cpu, None, definition,
                              hardware_virtualization=domain_type == "kvm")
        return self._with_verdict(found, mode) if mode is not None else found

    def _with_verdict(self, host: rules.HostCpu, mode: EvcMode) -> rules.HostCpu:
        """``host`` with its own libvirt's verdict on running ``mode``."""
        verdict = self._conn(host.host).compare_cpu(self._domain_type(host.host), mode.cpu_xml)
        return replace(host, verdict=verdict)

    def _vm_cpu(self, vm: VM, on_host: str) -> rules.VmCpu:
        """The CPU the VM was started with, expanded by ``on_host``'s libvirt."""
        if vm.cpu_mode in HOST_CPU_MODES:
            return rules.VmCpu(vm.name, vm.host, None, vm.cpu_mode)
        if vm.state is VMState.SHUTOFF:
            definition = vm.cpu_xml
        else:
            definition = self._conn(vm.host).vm_cpu(vm.name)
        functions = self._conn(on_host).cpu_functions(self._domain_type(on_host))
        expanded = functions.expand_cpu(definition or cpuxml.named_model(DEFAULT_GUEST_MODEL))
        return rules.VmCpu(vm.name, vm.host, expanded, vm.cpu_mode)

    def _mode(self, requested: str, hosts: list[rules.HostCpu], ask: str) -> EvcMode:
        """The mode ``requested`` means, computed by host ``ask``'s libvirt."""
        functions = self._conn(ask).cpu_functions(self._domain_type(ask))
        if requested == AUTO:
            definition = functions.baseline_cpu([h.definition for h in hosts])
        else:
            definition = cpuxml.named_model(requested)
        try:
            expanded = functions.expand_cpu(definition)
        except VirtError as err:
            raise InputError(f"CPU model {requested} is not one libvirt on {ask} knows "
                             f"({err.message})") from None
        return EvcMode(requested=requested, model=expanded.model or cpuxml.model_of(definition),
                       vendor=expanded.vendor or rules.majority_vendor(hosts),
                       cpu_xml=definition, features=tuple(sorted(expanded.features)),
                       enabled_at=time.time())

    # -- enable, disable, show ----------------------------------------------
    def enable(self, name: str, requested: str, inventory: Inventory,
               any_host: str | None) -> None:
        """Compute and judge the mode; store it if nothing refuses. ``any_host`` computes a
        named mode for a cluster with no hosts yet."""
        cluster = self._store.cluster(name)
        if requested != AUTO:
            validate.name("CPU model", requested)
        if cluster.evc is not None:
            raise InputError(f"cluster {name} already has EVC mode {cluster.evc.model}: "
                             f"disable it first ('ferry cluster evc disable {name}')")
        members = sorted(cluster.hosts)
        if requested == AUTO and not members:
            raise InputError(f"cluster {name} has no hosts to compute an 'auto' mode from: "
                             "name a CPU model (--mode MODEL), or add hosts first")
        ask = members[0] if members else any_host
        if ask is None:
            raise InputError("no host is registered to compute the mode with")
        hosts = [self._host_cpu(h) for h in members]
        vendor_errors = rules.vendors(name, hosts)
        if vendor_errors:  # libvirt cannot compute a baseline across vendors at all
            raise RefusedError(f"EVC on cluster {name} refused", vendor_errors)
        mode = self._mode(requested, hosts, ask)
        hosts = [self._with_verdict(h, mode) for h in hosts]
        running = [self._vm_cpu(vm, vm.host) for vm in inventory.vms.values()
                   if vm.host in members and vm.state is not VMState.SHUTOFF]
        findings = rules.judge_enable(name, mode, hosts, running)
        blocking = errors(findings)
        if blocking:
            raise RefusedError(f"EVC mode {mode.model} on cluster {name} refused: "
                               f"{len(blocking)} requirement(s) not met", blocking)
        self._store.set_cluster_evc(name, mode)

    def disable(self, name: str) -> None:
        if self._store.cluster(name).evc is None:
            raise InputError(f"cluster {name} does not have EVC enabled")
        self._store.set_cluster_evc(name, None)

    def report(self, name: str, vms: list[VM] | None = None) -> EvcReport:
        """The mode, each host's view of it, and which of ``vms`` run with another CPU."""
        cluster = self._store.cluster(name)
        mode = cluster.evc
        if mode is None:
            return EvcReport(name, None)
        views: list[EvcHostView] = []
        warnings: list[str] = []
        for host in sorted(cluster.hosts):
            try:
                found = self._host_cpu(host, mode)
            except FerryError as err:
                views.append(EvcHostView(host, error=err.message))
                continue
            views.append(EvcHostView(host, found.cpu.model, found.cpu.vendor,
                                     rules.hidden_features(mode, found),
                                     rules.missing_features(mode, found)))
            warnings += [f"{f.message} ({f.remedy})" for f in rules.host_emulated(name, found)]
        elsewhere: list[str] = []
        for vm in vms or []:
            if vm.host not in cluster.hosts or vm.state is VMState.SHUTOFF:
                continue
            try:
                cpu = self._vm_cpu(vm, vm.host)
            except FerryError as err:
                warnings.append(f"the CPU of VM {vm.name} was not read: {err.message}")
                continue
            if cpu.cpu is None or cpu.cpu.features != frozenset(mode.features):
                elsewhere.append(vm.name)
        return EvcReport(name, mode, tuple(views), tuple(warnings), tuple(sorted(elsewhere)))

    # -- joins, starts, moves ---------------------------------------------
    def judge_join(self, cluster: Cluster, host: str, running_vms: list[str]) -> list[Finding]:
        """Findings on ``host`` joining ``cluster`` (nothing to judge without EVC)."""
        mode = cluster.evc
        if mode is None:
            return []
        members = [h for h in sorted(cluster.hosts) if h != host]
        member_vendor = None
        if members and mode.vendor is None:
            member_vendor = self._host_cpu(members[0]).cpu.vendor
        return rules.judge_join(cluster.name, mode, self._host_cpu(host, mode), member_vendor,
                                running_vms)

    def definition_for_start(self, conn: HostConnection, vm: str) -> str | None:
        """VM ``vm``'s saved definition with the cluster's mode, if its host has one and the
        definition does not already carry it."""
        found = self.mode_of_host(conn.name)
        if found is None:
            return None
        saved = conn.saved_definition(vm, {})
        current = domxml.cpu_definition(saved)
        if current is not None and cpuxml.same_model(current, found[1].cpu_xml):
            return None
        return domxml.with_cpu(saved, found[1].cpu_xml)

    def fit(self, vm: VM, dest: str, clusters: list[Cluster] | None = None) -> EvcFit | None:
        """For the pre-flight: does the running VM's CPU fit ``dest``'s EVC mode?"""
        found = self.mode_of_host(dest, clusters)
        if found is None:
            return None
        cluster, mode = found
        try:
            cpu = self._vm_cpu(vm, dest)
        except FerryError as err:
            return EvcFit(cluster, mode.model, None, err.message)
        beyond = rules.vm_beyond_mode(mode, cpu)
        if beyond is None:
            return EvcFit(cluster, mode.model, (f"the host's own CPU ({vm.cpu_mode})",))
        return EvcFit(cluster, mode.model, beyond)


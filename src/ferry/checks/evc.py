"""EVC rules: which hosts and VMs a cluster's CPU mode admits (pure; the seed's EVC section).

A mode is one guest CPU definition that every VM started in the cluster gets,
so a VM can move between any of its hosts. The seed's requirements become:

- every host has CPUs of one vendor (``evc.vendor-mismatch``);
- every host can run the mode (``evc.host-unsupported``): the mode's features
  are a subset of what the host can give a guest, and, when the host was
  asked, its own libvirt agrees;
- no running VM uses a feature the mode would hide (``evc.vm-beyond-mode``):
  it would lose an instruction it already uses, so it must be powered off or
  moved out first;
- a host joins an EVC cluster only with no VM running on it
  (``evc.host-has-vms``), as the seed's maintenance-mode workflow has it;
- the seed's firmware settings: a host without hardware virtualization
  (Intel VT, AMD-V) runs guests emulated, which ferry allows with a warning
  (``evc.host-emulated``; the lab is such a host); a host whose firmware
  hides NX/XD lacks ``nx``, and the remedy of ``evc.host-unsupported`` says
  where to switch it on.

Feature sets come from libvirt's own CPU map (a model expanded into its
features); these functions only compare them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ferry.checks.facts import CpuFeatures, CpuVerdict
from ferry.checks.finding import Finding, Status
from ferry.model import EvcMode


@dataclass(frozen=True)
class HostCpu:
    """The CPU a host can give a guest, expanded, and its own verdict on the mode."""

    host: str
    cpu: CpuFeatures
    verdict: CpuVerdict | None = None  # the host's libvirt on the mode; None: not asked
    definition: str = ""  # the host's CPU as libvirt described it (input to a baseline)
    hardware_virtualization: bool | None = None  # guests there run on KVM; None: not asked


@dataclass(frozen=True)
class VmCpu:
    """A running VM's CPU, expanded; ``cpu`` is None when it sees the host's own CPU."""

    vm: str
    host: str
    cpu: CpuFeatures | None
    cpu_mode: str | None = None


def _listing(names: list[str] | set[str] | tuple[str, ...]) -> str:
    return ", ".join(sorted(names))


def majority_vendor(hosts: list[HostCpu]) -> str | None:
    """The vendor most hosts have (ties: the first host's by name); None with no hosts."""
    known = [h for h in sorted(hosts, key=lambda h: h.host) if h.cpu.vendor]
    if not known:
        return None
    counts = Counter(h.cpu.vendor for h in known)
    top = max(counts.values())
    return next(h.cpu.vendor for h in known if counts[h.cpu.vendor] == top)


def vendors(cluster: str, hosts: list[HostCpu], expected: str | None = None) -> list[Finding]:
    """One finding per host whose CPU vendor differs from ``expected`` (else the majority's)."""
    want = expected or majority_vendor(hosts)
    findings: list[Finding] = []
    for host in sorted(hosts, key=lambda h: h.host):
        vendor = host.cpu.vendor
        if want is None or vendor is None or vendor.lower() == want.lower():
            continue
        others = sorted(h.host for h in hosts if h.host != host.host and h.cpu.vendor == want)
        whom = f"hosts {_listing(others)} have" if others else "the mode has"
        findings.append(Finding(
            "evc.vendor-mismatch", Status.ERROR,
            f"host {host.host} has {vendor} CPUs but {whom} {want} CPUs: an EVC cluster "
            "cannot mix CPU vendors",
            remedy=f"take {host.host} out of cluster {cluster}, or put it in a cluster of "
                   f"{vendor} hosts",
            objects={"cluster": cluster, "host": host.host, "vendor": vendor,
                     "expected_vendor": want}))
    return findings


def missing_features(mode: EvcMode, host: HostCpu) -> tuple[str, ...]:
    """What the mode needs that the host cannot give a guest (feature arithmetic and libvirt)."""
    missing = set(mode.features) - host.cpu.features
    if host.verdict is not None and not host.verdict.compatible:
        missing |= set(host.verdict.missing_features)
    return tuple(sorted(missing))


def hidden_features(mode: EvcMode, host: HostCpu) -> tuple[str, ...]:
    """What the host could give a guest that the mode hides from VMs in the cluster."""
    return tuple(sorted(host.cpu.features - set(mode.features)))


def host_runs_mode(cluster: str, mode: EvcMode, host: HostCpu) -> Finding:
    objects = {"cluster": cluster, "host": host.host, "mode": mode.model}
    missing = missing_features(mode, host)
    refused = bool(missing) or (host.verdict is not None and not host.verdict.compatible)
    if refused:
        lacks = _listing(missing) if missing else "features libvirt did not name"
        detail = f" ({host.verdict.detail})" if host.verdict and host.verdict.detail else ""
        firmware = ("enable No Execute (AMD) or Execute Disable (Intel) in its firmware "
                    "settings, or " if "nx" in missing else "")
        return Finding(
            "evc.host-unsupported", Status.ERROR,
            f"host {host.host} cannot run EVC mode {mode.model}: its CPU lacks {lacks}{detail}",
            remedy=f"{firmware}choose a mode every host supports ('--mode auto' computes one), "
                   f"or keep {host.host} out of cluster {cluster}",
            objects={**objects, "features": _listing(missing)})
    return Finding("evc.host-supported", Status.PASS,
                   f"host {host.host} can run EVC mode {mode.model}", objects=objects)


def host_emulated(cluster: str, host: HostCpu) -> list[Finding]:
    """A warning when the host has no hardware virtualization: its guests run emulated."""
    if host.hardware_virtualization is not False:
        return []
    return [Finding(
        "evc.host-emulated", Status.WARNING,
        f"host {host.host} runs VMs emulated (TCG), much slower: it offers no usable hardware "
        "virtualization (KVM), because Intel VT or AMD-V is off in its firmware, absent, or "
        "unusable there",
        remedy=f"enable Intel VT or AMD-V in {host.host}'s firmware (BIOS) settings",
        objects={"cluster": cluster, "host": host.host})]


def vm_beyond_mode(mode: EvcMode, vm: VmCpu) -> tuple[str, ...] | None:
    """Features the running VM uses that the mode hides; None if its CPU is the host's own."""
    if vm.cpu is None:
        return None
    return tuple(sorted(vm.cpu.features - set(mode.features)))


def vm_fits_mode(cluster: str, mode: EvcMode, vm: VmCpu) -> Finding:
    objects = {"cluster": cluster, "vm": vm.vm, "host": vm.host, "mode": mode.model}
    remedy = (f"power off {vm.vm} (it gets the mode's CPU when ferry starts it again), or "
              f"migrate it out of cluster {cluster}, then enable EVC")
    beyond = vm_beyond_mode(mode, vm)
    if beyond is None:
        return Finding(
            "evc.vm-beyond-mode", Status.ERROR,
            f"VM {vm.vm} on {vm.host} runs with CPU mode {vm.cpu_mode or 'unknown'}, which "
            f"exposes the host's own CPU, not one EVC mode {mode.model} can hold",
            remedy=remedy, objects=objects)
    if beyond:
        return Finding(
            "evc.vm-beyond-mode", Status.ERROR,
            f"VM {vm.vm} on {vm.host} uses CPU features EVC mode {mode.model} hides: "
            f"{_listing(beyond)}",
            remedy=remedy, objects={**objects, "features": _listing(beyond)})
    return Finding("evc.vm-fits", Status.PASS,
                   f"VM {vm.vm} on {vm.host} uses no feature beyond EVC mode {mode.model}",
                   objects=objects)


def judge_enable(cluster: str, mode: EvcMode, hosts: list[HostCpu],
                 running: list[VmCpu]) -> list[Finding]:
    """Every finding on enabling ``mode`` on the cluster; any error refuses it."""
    findings = vendors(cluster, hosts)
    for host in sorted(hosts, key=lambda h: h.host):
        findings.append(host_runs_mode(cluster, mode, host))
        findings += host_emulated(cluster, host)
    findings += [vm_fits_mode(cluster, mode, vm)
                 for vm in sorted(running, key=lambda v: (v.host, v.vm))]
    return findings


def judge_join(cluster: str, mode: EvcMode, host: HostCpu, cluster_vendor: str | None,
               running_vms: list[str]) -> list[Finding]:
    """Every finding on adding ``host`` to a cluster with EVC mode ``mode``."""
    findings = vendors(cluster, [host], expected=mode.vendor or cluster_vendor)
    findings.append(host_runs_mode(cluster, mode, host))
    findings += host_emulated(cluster, host)
    if running_vms:
        findings.append(Finding(
            "evc.host-has-vms", Status.ERROR,
            f"host {host.host} runs VM(s) {_listing(running_vms)}: a host joins an EVC "
            "cluster with no VM running on it",
            remedy=f"'ferry host maintenance enter {host.host}' moves its VMs to other hosts; "
                   f"add it to {cluster}, exit maintenance, then migrate VMs back",
            objects={"cluster": cluster, "host": host.host, "vms": _listing(running_vms)}))
    return findings

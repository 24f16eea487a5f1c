"""Pre-flight checks on CPU compatibility between source and destination hosts.

The seed: hosts "must have the same processor vendor class (Intel or AMD) and
compatible feature sets". libvirt judges the feature set itself: the
destination compares the VM's CPU definition with what it can run
(``compareHypervisorCPU``); ferry only reads that verdict.
"""

from __future__ import annotations

from ferry.checks.facts import PreflightFacts
from ferry.checks.finding import Finding, Status
from ferry.checks.host import pair


def same_vendor(facts: PreflightFacts) -> list[Finding]:
    """Intel and AMD guests cannot move between each other, whatever the CPU model."""
    source, dest = pair(facts)
    hosts = facts.inventory.hosts
    vendors = {h: (hosts[h].cpu_vendor if h in hosts else None) for h in (source, dest)}
    objects = {"source_host": source, "dest_host": dest}
    unknown = [h for h, v in vendors.items() if not v]
    if unknown:
        return [Finding("cpu.vendor-unknown", Status.WARNING,
                        f"the CPU vendor of {', '.join(unknown)} is unknown; the vendors of "
                        f"{source} and {dest} were not compared",
                        remedy=f"refresh host(s) {', '.join(unknown)}", objects=objects)]
    a, b = vendors[source] or "", vendors[dest] or ""
    objects = {**objects, "source_vendor": a, "dest_vendor": b}
    if a.lower() != b.lower():
        return [Finding("cpu.vendor-mismatch", Status.ERROR,
                        f"host {source} has {a} CPUs and host {dest} has {b} CPUs: a running VM "
                        "cannot move between CPU vendors",
                        remedy=f"choose a destination with {a} CPUs, or move VM "
                               f"{facts.vm.name} powered off (cold migration)",
                        objects=objects)]
    return [Finding("cpu.vendor", Status.PASS,
                    f"hosts {source} and {dest} both have {a} CPUs", objects=objects)]


def cpu_compatible(facts: PreflightFacts) -> list[Finding]:
    """The destination can run the VM's CPU definition (libvirt's own comparison)."""
    vm = facts.vm
    _, dest = pair(facts)
    objects = {"vm": vm.name, "host": dest}
    verdict = facts.cpu
    if verdict is None:
        return [Finding("cpu.unverified", Status.WARNING,
                        f"whether host {dest} can run the CPU of VM {vm.name} was not verified",
                        remedy=f"refresh host {dest} so ferry can ask it to compare the VM's CPU",
                        objects=objects)]
    if not verdict.compatible:
        missing = ", ".join(verdict.missing_features) or "unknown features"
        detail = f" ({verdict.detail})" if verdict.detail else ""
        return [Finding(
            "cpu.incompatible", Status.ERROR,
            f"host {dest} cannot run the CPU of VM {vm.name}: it lacks {missing}{detail}",
            remedy=f"give {vm.name} a CPU model both hosts support (a baseline of the two hosts, "
                   "as an EVC cluster does) and restart it, or choose another destination",
            objects={**objects, "features": missing})]
    return [Finding("cpu.compatible", Status.PASS,
                    f"host {dest} can run the CPU of VM {vm.name}", objects=objects)]


def passthrough_identical(facts: PreflightFacts) -> list[Finding]:
    """A host-passthrough guest sees the host's exact CPU, so both hosts' CPUs must match."""
    vm = facts.vm
    source, dest = pair(facts)
    objects = {"vm": vm.name, "source_host": source, "dest_host": dest}
    if vm.cpu_mode != "host-passthrough":
        return [Finding("cpu.passthrough", Status.NOT_APPLICABLE,
                        f"VM {vm.name} uses CPU mode {vm.cpu_mode or 'default'}, not "
                        "host-passthrough: identical host CPUs are not required",
                        objects={"vm": vm.name})]
    a, b = facts.source_cpu_signature, facts.dest_cpu_signature
    if a is None or b is None:
        return [Finding("cpu.passthrough-unverified", Status.WARNING,
                        f"VM {vm.name} uses host-passthrough, and whether {source} and {dest} "
                        "have identical CPUs was not verified",
                        remedy=f"refresh hosts {source} and {dest}", objects=objects)]
    if a != b:
        return [Finding(
            "cpu.passthrough-mismatch", Status.ERROR,
            f"VM {vm.name} uses host-passthrough, but the CPUs of {source} and {dest} differ "
            f"({a} vs {b}): the guest could lose instructions it already uses",
            remedy=f"give {vm.name} a named CPU model (mode custom, or host-model) and restart "
                   "it, or choose a destination with an identical CPU",
            objects=objects)]
    return [Finding("cpu.passthrough", Status.PASS,
                    f"VM {vm.name} uses host-passthrough and {source} and {dest} have identical "
                    "CPUs", objects=objects)]


def evc_mode_fits(facts: PreflightFacts) -> list[Finding]:
    """A running VM moving into an EVC cluster must not use features the cluster's mode hides.

    Otherwise the VM would run there with a CPU the other hosts of the cluster
    are not guaranteed to offer, and the cluster's promise (every VM can move to
    every host) would not hold for it.
    """
    vm = facts.vm
    fit = facts.evc
    if fit is None:
        return [Finding("cpu.evc-mode", Status.NOT_APPLICABLE,
                        f"host {facts.dest} is in no cluster with EVC",
                        objects={"vm": vm.name, "host": facts.dest})]
    objects = {"vm": vm.name, "host": facts.dest, "cluster": fit.cluster, "mode": fit.mode}
    if fit.beyond is None:
        return [Finding("cpu.evc-mode-unverified", Status.WARNING,
                        f"whether VM {vm.name}'s CPU fits EVC mode {fit.mode} of cluster "
                        f"{fit.cluster} was not verified{': ' + fit.detail if fit.detail else ''}",
                        remedy=f"refresh host {facts.dest}", objects=objects)]
    if fit.beyond:
        features = ", ".join(fit.beyond)
        return [Finding(
            "cpu.evc-mode", Status.ERROR,
            f"VM {vm.name} uses CPU features that EVC mode {fit.mode} of cluster {fit.cluster} "
            f"hides: {features}",
            remedy=f"power {vm.name} off and move it cold ('--cold'): ferry starts it in "
                   f"{fit.cluster} with the mode's CPU",
            objects={**objects, "features": features})]
    return [Finding("cpu.evc-mode", Status.PASS,
                    f"VM {vm.name}'s CPU fits EVC mode {fit.mode} of cluster {fit.cluster}",
                    objects=objects)]

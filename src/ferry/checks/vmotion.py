"""Pre-flight checks about the VM itself and its networks when it changes hosts (VMotion).

Each check is a pure function ``(facts) -> list[Finding]`` and returns a row
for every object it judged, passing or not, so the report says what was
checked as well as what failed. Datastore identity comes from ferry's probe (a
file written through one host and looked for through the other), recorded on
:attr:`ferry.model.Pool.datastore`; never from names or paths.
"""

from __future__ import annotations

from ferry.checks.devices import MEDIA, media_remedy
from ferry.checks.facts import PreflightFacts
from ferry.checks.finding import Finding, Status
from ferry.checks.storage import chain_of, moved_disks, pool_holding
from ferry.model import VM, Network, VMState


def _stays(facts: PreflightFacts, code: str, what: str) -> list[Finding] | None:
    """An n/a row when the VM keeps its host (a cold move between datastores only)."""
    if facts.request.dest_host is None:
        return [Finding(code, Status.NOT_APPLICABLE,
                        f"{what} not checked: VM {facts.vm.name} stays on host {facts.vm.host}",
                        objects={"vm": facts.vm.name, "host": facts.vm.host})]
    return None


def vm_running(facts: PreflightFacts) -> list[Finding]:
    vm = facts.vm
    if vm.state is VMState.RUNNING:
        return [Finding("vm.running", Status.PASS, f"VM {vm.name} is running on {vm.host}",
                        objects={"vm": vm.name, "host": vm.host})]
    where = [f"--host {facts.request.dest_host}"] if facts.request.dest_host else []
    if facts.request.dest_datastore:
        where.append(f"--datastore {facts.request.dest_datastore}")
    flag = " ".join(where) or f"--host {facts.dest}"
    return [Finding(
        "vm.not-running", Status.ERROR,
        f"VM {vm.name} is {vm.state.value} on {vm.host}; a live migration needs a running VM",
        remedy=f"power it on with 'ferry vm start {vm.name}', or move it powered off "
               f"(cold migration: 'ferry migrate {vm.name} {flag} --cold')",
        objects={"vm": vm.name, "host": vm.host},
    )]


def vm_powered_off(facts: PreflightFacts) -> list[Finding]:
    """A cold migration copies files that a running guest would keep changing."""
    vm = facts.vm
    objects = {"vm": vm.name, "host": vm.host}
    if vm.state is VMState.SHUTOFF:
        return [Finding("vm.powered-off", Status.PASS,
                        f"VM {vm.name} is powered off on {vm.host}", objects=objects)]
    return [Finding(
        "vm.not-powered-off", Status.ERROR,
        f"VM {vm.name} is {vm.state.value} on {vm.host}; a cold migration needs it powered off",
        remedy=f"shut it down ('ferry vm stop {vm.name}'), or move it while it runs "
               "(live migration: drop --cold)",
        objects=objects)]


def destination_known(facts: PreflightFacts) -> list[Finding]:
    """The destination is a registered host other than the VM's own."""
    vm, dest = facts.vm, facts.request.dest_host
    if dest is None and facts.request.dest_datastore:
        return [Finding("request.destination", Status.NOT_APPLICABLE,
                        f"VM {vm.name} stays on host {vm.host}; only its disks move",
                        objects={"vm": vm.name, "host": vm.host})]
    if dest is None:
        return [Finding("request.no-destination", Status.ERROR,
                        f"the request to move VM {vm.name} names no destination host or datastore",
                        remedy="name a destination host (--host) and/or datastore (--datastore)",
                        objects={"vm": vm.name})]
    objects = {"vm": vm.name, "host": dest}
    if dest not in facts.inventory.hosts:
        return [Finding("request.unknown-host", Status.ERROR,
                        f"host {dest} is not registered with ferry",
                        remedy=f"register it ('ferry host add {dest} URI') or pick one of: "
                               + ", ".join(sorted(facts.inventory.hosts)),
                        objects=objects)]
    if dest == vm.host:
        return [Finding("request.same-host", Status.ERROR,
                        f"VM {vm.name} already runs on {dest}",
                        remedy="choose another host, or name only a datastore to move its disks",
                        objects=objects)]
    return [Finding("request.destination", Status.PASS,
                    f"VM {vm.name} moves from {vm.host} to registered host {dest}",
                    objects={**objects, "source_host": vm.host})]


def _file_remedy(what: str, vm: VM, dest: str, store: str | None) -> str:
    """What really lets ``dest`` see a file, by what the VM uses it for.

    ``store`` is the source datastore holding the file (None: in no datastore).
    A storage migration moves disks only: media, kernels and initrds stay where
    they are, so their remedy is to put a copy where both hosts see it.
    """
    kind, _, target = what.partition(" ")
    shared = f"a datastore that {vm.host} and {dest} share"
    elsewhere = f", or choose a destination that sees {store}" if store else ""
    if kind in MEDIA:
        return media_remedy(vm.name, kind, target, shared) + elsewhere
    if kind in ("kernel", "initrd"):
        # QEMU reads them when it starts, and a running VM's live definition keeps
        # the path it started with: a new path counts from its next start.
        restart = (f", then shut {vm.name} down and start it again"
                   if vm.state is not VMState.SHUTOFF else "")
        return (f"copy the {kind} file to {shared} and point {vm.name}'s definition at the "
                f"copy ('virsh edit {vm.name}', element <{kind}>){restart} (a storage "
                f"migration moves disks only){elsewhere}")
    if kind == "backing":
        # A storage migration refuses an overlay; merging the chain into the disk
        # leaves one file, on the disk's own datastore.
        return (f"merge the chain into the disk ('virsh blockpull {vm.name} "
                f"{what.split()[-1]}'){elsewhere}")
    if store is None:
        return f"move the file into a storage pool that {vm.host} and {dest} share"
    if kind in ("disk", "lun"):
        return ("move the disk to a datastore both hosts share first (Storage VMotion), "
                f"or choose a destination that sees {store}")
    return (f"copy the {what} to {shared} and point {vm.name}'s definition at the copy"
            f"{elsewhere}")


def storage_shared(facts: PreflightFacts) -> list[Finding]:
    """Every file the VM uses is on a datastore the destination sees (disks, ISOs, kernel).

    When the disks move too (kind BOTH) the moved ones are copied, so only the
    files left behind (ISOs, kernel, disks not named) must be shared.
    """
    if (skip := _stays(facts, "storage.shared", "shared storage")) is not None:
        return skip
    vm, inv, dest = facts.vm, facts.inventory, facts.dest
    copied = {d.source for d in moved_disks(facts)}
    source_pools = inv.pools_on(vm.host)
    findings: list[Finding] = []
    dest_datastores = {p.datastore for p in inv.pools_on(dest) if p.active and p.datastore}
    read = list(vm.files())
    for disk in vm.disks:
        if disk.source in copied:
            continue  # copied, chain and all: storage.backing-chain judges it
        for path in chain_of(facts, disk):
            if pool_holding(source_pools, path) is not None:
                # One outside every datastore is refused by storage.chain-outside.
                read.append((f"backing file of {disk.device} {disk.target}", path))
    for what, path in read:
        if path in copied:
            continue  # copied to the target datastore: storage.* checks judge it
        objects = {"vm": vm.name, "file": path, "host": dest}
        pool = pool_holding(source_pools, path)
        if pool is None:
            findings.append(Finding(
                "storage.unmanaged", Status.ERROR,
                f"{what} of VM {vm.name} ({path}) is on no datastore of host {vm.host}, so "
                f"ferry cannot prove that {dest} sees it",
                remedy=_file_remedy(what, vm, dest, None),
                objects=objects))
        elif pool.datastore in dest_datastores:
            findings.append(Finding(
                "storage.shared", Status.PASS,
                f"{what} of VM {vm.name} is on datastore {pool.datastore}, which {dest} sees",
                objects={**objects, "datastore": pool.datastore or pool.name}))
        else:
            store = pool.datastore or pool.name
            findings.append(Finding(
                "storage.not-shared", Status.ERROR,
                f"{what} of VM {vm.name} ({path}) is on datastore {store} of {vm.host}, which "
                f"host {dest} does not see (probe file not found there)",
                remedy=_file_remedy(what, vm, dest, store),
                objects={**objects, "datastore": store}))
    return findings


def _dest_network(facts: PreflightFacts, name: str) -> Network | None:
    return next((n for n in facts.inventory.networks_on(facts.dest) if n.name == name), None)


def networks_present(facts: PreflightFacts) -> list[Finding]:
    """Seed: network labels must match exactly (including case) on each host."""
    if (skip := _stays(facts, "network.present", "networks")) is not None:
        return skip
    vm, dest = facts.vm, facts.dest
    findings: list[Finding] = []
    dest_names = [n.name for n in facts.inventory.networks_on(dest)]
    for nic in vm.interfaces:
        if nic.kind != "network" or not nic.network:
            continue
        objects = {"vm": vm.name, "network": nic.network, "host": dest, "interface": nic.mac}
        found = _dest_network(facts, nic.network)
        if found is not None and found.active:
            findings.append(Finding(
                "network.present", Status.PASS,
                f"network {nic.network} exists on {dest}", objects=objects))
        elif found is not None:
            findings.append(Finding(
                "network.inactive", Status.ERROR,
                f"network {nic.network} exists on {dest} but is not started",
                remedy=f"start network {nic.network} on {dest} (virsh net-start)",
                objects=objects))
        elif near := [n for n in dest_names if n.lower() == nic.network.lower()]:
            findings.append(Finding(
                "network.case-mismatch", Status.ERROR,
                f"VM {vm.name} uses network '{nic.network}' but {dest} has '{near[0]}': "
                "network labels must match exactly, case included",
                remedy=f"rename the network on one host so both spell it '{nic.network}'",
                objects={**objects, "dest_network": near[0]}))
        else:
            findings.append(Finding(
                "network.missing", Status.ERROR,
                f"VM {vm.name} uses network '{nic.network}', which does not exist on {dest}",
                remedy=f"define network '{nic.network}' on {dest} with the same name",
                objects=objects))
    return findings


def portgroups_present(facts: PreflightFacts) -> list[Finding]:
    """Seed: port groups must match exactly; libvirt: ``<portgroup>`` of the network."""
    if (skip := _stays(facts, "network.portgroup", "port groups")) is not None:
        return skip
    vm, dest = facts.vm, facts.dest
    findings: list[Finding] = []
    for nic in vm.interfaces:
        if nic.kind != "network" or not nic.network or not nic.portgroup:
            continue
        found = _dest_network(facts, nic.network)
        if found is None:
            continue  # networks_present already reports the missing network
        objects = {"vm": vm.name, "network": nic.network, "portgroup": nic.portgroup,
                   "host": dest, "interface": nic.mac}
        if nic.portgroup in found.portgroups:
            findings.append(Finding(
                "network.portgroup", Status.PASS,
                f"port group {nic.portgroup} of network {nic.network} exists on {dest}",
                objects=objects))
        else:
            have = ", ".join(found.portgroups) or "none"
            findings.append(Finding(
                "network.portgroup-missing", Status.ERROR,
                f"interface {nic.mac} of VM {vm.name} uses port group '{nic.portgroup}' of "
                f"network {nic.network}, which {dest} does not have (it has: {have})",
                remedy=f"add <portgroup name='{nic.portgroup}'> to network {nic.network} on "
                       f"{dest}, spelled exactly the same",
                objects=objects))
    return findings


def no_internal_networks(facts: PreflightFacts) -> list[Finding]:
    """Seed: a VM cannot be connected to an internal-only vSwitch (no uplink).

    Judged on the source's network: its peers are VMs on that host only, so
    after the move the VM would be cut off from them, whatever the destination
    has under the same name.
    """
    vm = facts.vm
    source = {n.name: n for n in facts.inventory.networks_on(vm.host)}
    findings: list[Finding] = []
    for nic in vm.interfaces:
        if nic.kind != "network" or not nic.network:
            continue
        net = source.get(nic.network)
        objects = {"vm": vm.name, "network": nic.network, "host": vm.host, "interface": nic.mac}
        if net is not None and net.internal_only:
            findings.append(Finding(
                "network.internal-only", Status.ERROR,
                f"interface {nic.mac} of VM {vm.name} is on network {nic.network}, which is "
                f"internal to {vm.host} (no <forward>, no uplink): its peers would be left behind",
                remedy=f"disconnect the interface or attach it to a network with an uplink, "
                       f"e.g. 'virsh detach-interface {vm.name} network --mac {nic.mac}'",
                objects=objects))
        else:
            findings.append(Finding(
                "network.uplinked", Status.PASS,
                f"network {nic.network} of VM {vm.name} on {vm.host} is not internal-only",
                objects=objects))
    return findings

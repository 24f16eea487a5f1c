"""Pre-flight checks for a live migration between hosts (the seed's VMotion requirements).

Each check is a pure function ``(inventory, vm, dest) -> list[Finding]`` and
returns a row for every object it judged, passing or not, so the report says
what was checked as well as what failed. Datastore identity comes from ferry's
probe (a file written through one host and looked for through the other),
recorded on :attr:`ferry.model.Pool.datastore`; never from names or paths.
"""

from __future__ import annotations

from collections.abc import Callable

from ferry.checks.finding import Finding, Status
from ferry.model import VM, Inventory, Pool, VMState

Check = Callable[[Inventory, VM, str], list[Finding]]


def vm_running(inv: Inventory, vm: VM, dest: str) -> list[Finding]:
    if vm.state is VMState.RUNNING:
        return [Finding("vm.running", Status.PASS, f"VM {vm.name} is running on {vm.host}",
                        objects={"vm": vm.name, "host": vm.host})]
    return [Finding(
        "vm.not-running", Status.ERROR,
        f"VM {vm.name} is {vm.state.value} on {vm.host}; a live migration needs a running VM",
        remedy=f"power it on with 'ferry vm start {vm.name}', or move it powered off "
               "(cold migration)",
        objects={"vm": vm.name, "host": vm.host},
    )]


def pool_holding(pools: list[Pool], path: str) -> Pool | None:
    """The pool of one host whose folder holds ``path`` (the longest matching folder)."""
    best: Pool | None = None
    for pool in pools:
        if not pool.path:
            continue
        folder = pool.path.rstrip("/") + "/"
        if path.startswith(folder) and (best is None or len(folder) > len(best.path or "")):
            best = pool
    return best


def storage_shared(inv: Inventory, vm: VM, dest: str) -> list[Finding]:
    findings: list[Finding] = []
    source_pools = inv.pools_on(vm.host)
    dest_datastores = {p.datastore for p in inv.pools_on(dest) if p.active and p.datastore}
    for what, path in vm.files():
        objects = {"vm": vm.name, "file": path, "host": dest}
        pool = pool_holding(source_pools, path)
        if pool is None:
            findings.append(Finding(
                "storage.unmanaged", Status.ERROR,
                f"{what} of VM {vm.name} ({path}) is on no datastore of host {vm.host}, so "
                f"ferry cannot prove that {dest} sees it",
                remedy=f"move the file into a storage pool that {vm.host} and {dest} share",
                objects=objects))
        elif pool.datastore in dest_datastores:
            findings.append(Finding(
                "storage.shared", Status.PASS,
                f"{what} of VM {vm.name} is on datastore {pool.datastore}, which {dest} sees",
                objects={**objects, "datastore": pool.datastore or pool.name}))
        else:
            findings.append(Finding(
                "storage.not-shared", Status.ERROR,
                f"{what} of VM {vm.name} ({path}) is on datastore "
                f"{pool.datastore or pool.name} of {vm.host}, which host {dest} does not see "
                "(probe file not found there)",
                remedy="move the disk to a datastore both hosts share first (Storage VMotion), "
                       f"or choose a destination that sees {pool.datastore or pool.name}",
                objects={**objects, "datastore": pool.datastore or pool.name}))
    return findings


def networks_present(inv: Inventory, vm: VM, dest: str) -> list[Finding]:
    findings: list[Finding] = []
    dest_networks = {n.name: n for n in inv.networks_on(dest)}
    for nic in vm.interfaces:
        if nic.kind != "network" or not nic.network:
            continue
        objects = {"vm": vm.name, "network": nic.network, "host": dest, "interface": nic.mac}
        found = dest_networks.get(nic.network)
        if found is not None and found.active:
            findings.append(Finding(
                "network.present", Status.PASS,
                f"network {nic.network} exists on {dest}", objects=objects))
            continue
        if found is not None:
            findings.append(Finding(
                "network.inactive", Status.ERROR,
                f"network {nic.network} exists on {dest} but is not started",
                remedy=f"start network {nic.network} on {dest} (virsh net-start)",
                objects=objects))
            continue
        near = [name for name in dest_networks if name.lower() == nic.network.lower()]
        if near:
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


VMOTION_CHECKS: tuple[Check, ...] = (vm_running, storage_shared, networks_present)


def check_vmotion(inv: Inventory, vm: VM, dest: str) -> list[Finding]:
    """Every row for moving running ``vm`` to host ``dest``; inputs already validated."""
    findings: list[Finding] = []
    for check in VMOTION_CHECKS:
        findings.extend(check(inv, vm, dest))
    return findings

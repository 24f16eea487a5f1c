"""Where a VM goes when its host is evacuated: pure choices over plain data.

A host in a cluster is evacuated to the other hosts of its cluster, as DRS
does in vSphere: a cluster is the admin's unit of placement (its networks,
its EVC mode, its licences), so VMs do not leave it unasked. A host in no
cluster is evacuated to every other host. Hosts in maintenance take nothing.
Among the hosts whose whole pre-flight report passes for the VM, the one with
the most memory free under its limit, counting the VMs already placed there
by the same evacuation. Ties go to the first host by name, so a plan is
repeatable. The hosts are judged in that order (:func:`by_preference`) until
one passes, so placing a VM asks few hosts, not the whole fleet; only a VM
that can go nowhere is judged against every host, for a reason from each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ferry.model import VM, Host, VMState


@dataclass(frozen=True)
class Candidate:
    host: str
    blocking: tuple[str, ...]  # why not: "code: message" of each error row; empty = allowed
    free_mib: int  # memory left under the host's limit, after what is already placed there


@dataclass(frozen=True)
class Scope:
    hosts: list[Host]  # where the evacuation may send VMs
    description: str  # for a person: "the other hosts of cluster prod"


def evacuation_scope(host: Host, hosts: list[Host]) -> Scope:
    """The hosts an evacuation of ``host`` may send VMs to."""
    others = [h for h in hosts if h.name != host.name and not h.maintenance]
    if host.cluster is None:
        return Scope(others, "every other host")
    return Scope([h for h in others if h.cluster == host.cluster],
                 f"the other hosts of cluster {host.cluster}")


def running_mib(vms: Iterable[VM]) -> dict[str, int]:
    """host -> MiB its running (not powered-off) VMs use: read once for a whole evacuation."""
    used: dict[str, int] = {}
    for vm in vms:
        if vm.state is not VMState.SHUTOFF:
            used[vm.host] = used.get(vm.host, 0) + vm.memory_mib
    return used


def free_memory_mib(host: Host, running: Mapping[str, int], planned_mib: int = 0) -> int:
    """Memory a host can still give VMs: its limit (or its RAM) minus what runs or is coming."""
    ceiling = host.memory_limit_mib if host.memory_limit_mib is not None else host.memory_mib
    return ceiling - running.get(host.name, 0) - planned_mib


def by_preference(hosts: list[Host], free: Mapping[str, int]) -> list[Host]:
    """The hosts in the order :func:`choose_host` prefers them: most free memory first,
    ties by name. The first whose report passes and that the VM fits is the one it chooses,
    so a VM is judged host by host in this order until one passes, not against all."""
    return sorted(hosts, key=lambda h: (-free[h.name], h.name))


def choose_host(vm: VM, candidates: list[Candidate]) -> Candidate | None:
    """The allowed candidate with the most free memory that the VM fits in, or None."""
    fitting = [c for c in candidates if not c.blocking and c.free_mib >= vm.memory_mib]
    if not fitting:
        return None
    return min(fitting, key=lambda c: (-c.free_mib, c.host))


def why_not(vm: VM, candidates: list[Candidate], scope: str = "every other host") -> str:
    """One line per host saying why the VM cannot go there."""
    if not candidates:
        return f"nowhere to go: {scope} (none is out of maintenance mode)"
    reasons = []
    for c in sorted(candidates, key=lambda c: c.host):
        if c.blocking:
            reasons.append(f"{c.host}: {'; '.join(c.blocking)}")
        elif c.free_mib < vm.memory_mib:
            reasons.append(f"{c.host}: {max(c.free_mib, 0)} MiB free under its limit, the VM "
                           f"needs {vm.memory_mib} MiB")
    return " | ".join(reasons)

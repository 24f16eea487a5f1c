"""VMs by identity: one inventory entry per VM UUID, names resolved, moves named.

Pure functions over plain data. libvirt lists a moving VM twice: on its
source, and on the destination as a paused incoming copy with the same UUID
(see :class:`ferry.model.MigrationSide`). The inventory keeps the source and
folds the copy into it; a name two different VMs share is an error naming both,
never "the last host listed wins".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from ferry.checks.finding import Finding, Status
from ferry.errors import AmbiguousName, NotFound
from ferry.job import Job
from ferry.model import VM, MigrationSide, MoveHold, VMState


def _rank(vm: VM) -> tuple[bool, bool, bool, str]:
    """Which of the domains sharing a UUID is the VM, best first.

    Not an incoming copy; active; then not the source of a migration: in the
    moment after the switchover the destination already runs the VM (no longer
    incoming) while the source still holds its outgoing job.
    """
    return (vm.migration is MigrationSide.INCOMING, vm.state is VMState.SHUTOFF,
            vm.migration is MigrationSide.OUTGOING, vm.host)


def merge_vms(found: Iterable[VM]) -> dict[str, VM]:
    """UUID -> the VM, from every host's domains; an incoming copy marks its source moving."""
    by_uuid: dict[str, list[VM]] = {}
    for vm in found:
        by_uuid.setdefault(vm.uuid, []).append(vm)
    merged: dict[str, VM] = {}
    for uuid, copies in by_uuid.items():
        copies.sort(key=_rank)
        vm = copies[0]
        incoming = [c.host for c in copies[1:] if c.migration is MigrationSide.INCOMING]
        if incoming and vm.migration is not MigrationSide.INCOMING:
            vm = replace(vm, moving=MoveHold(dest_host=incoming[0]))
        merged[uuid] = vm
    return merged


def resolve(vms: dict[str, VM], ref: str) -> VM:
    """The VM a user means by ``ref``: its UUID, or a name only one VM has."""
    exact = vms.get(ref) or vms.get(ref.lower())
    if exact is not None:
        return exact
    named = sorted((vm for vm in vms.values() if vm.name == ref), key=lambda v: v.host)
    if not named:
        raise NotFound(f"no VM named {ref}")
    if len(named) > 1:
        listing = "; ".join(f"on {vm.host} with UUID {vm.uuid}" for vm in named)
        raise AmbiguousName(
            f"{len(named)} different VMs are named {ref} ({listing}): give the UUID of the "
            "one you mean instead of its name", [(vm.host, vm.uuid) for vm in named])
    return named[0]


def hold_of(vm: VM, jobs: Sequence[Job]) -> MoveHold | None:
    """What holds ``vm`` in a move: ferry's unfinished job for its UUID, else libvirt's word."""
    for job in jobs:
        if job.vm_uuid == vm.uuid and not job.state.finished:
            dest = job.dest_host if job.dest_host != job.source_host else None
            return MoveHold(dest_host=dest or (vm.moving.dest_host if vm.moving else None),
                            job_id=job.id, kind=job.kind, state=job.state.value)
    if vm.moving is not None:
        return vm.moving
    if vm.migration is not None:  # a source whose destination ferry does not know
        return MoveHold(dest_host=None)
    return None


def describe(hold: MoveHold) -> str:
    """'moving to host3 (job 1234…, migrate, running)', as a list and a refusal say it."""
    where = f" to {hold.dest_host}" if hold.dest_host else ""
    if hold.by_ferry:
        return f"moving{where} (job {hold.job_id}, {hold.kind}, {hold.state})"
    return f"migrating{where} (a migration ferry did not start)"


def moving_finding(name: str, uuid: str, host: str, hold: MoveHold, action: str) -> Finding:
    """The refusal of ``action`` on VM ``name`` (on ``host``) in a move, naming the move."""
    objects = {"vm": name, "uuid": uuid, "host": host}
    if hold.dest_host:
        objects["dest_host"] = hold.dest_host
    if hold.by_ferry:
        assert hold.job_id is not None
        objects["job"] = hold.job_id
        remedy = (f"wait for job {hold.job_id} to end ('ferry job show {hold.job_id}'), "
                  f"or cancel it ('ferry job cancel {hold.job_id}')")
    else:
        remedy = ("wait for that migration to end, or cancel it where it was started "
                  f"(virsh domjobabort on {host})")
    return Finding(
        "vm.moving", Status.ERROR,
        f"VM {name} ({uuid}) on {host} is {describe(hold)}: "
        f"{action} would act on a VM in the middle of its move",
        remedy=remedy, objects=objects)


def incoming_finding(vm: VM, action: str) -> Finding:
    """The refusal of ``action`` on a destination's incoming copy whose source is not known."""
    return Finding(
        "vm.moving", Status.ERROR,
        f"{vm.name} ({vm.uuid}) on {vm.host} is the incoming copy of a migration, not the "
        f"VM itself: {action} is refused",
        remedy="wait for the migration to end; the VM runs on its source until then",
        objects={"vm": vm.name, "uuid": vm.uuid, "host": vm.host})

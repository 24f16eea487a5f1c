"""Pre-flight checks for moving a VM's disks (the seed's Storage VMotion requirements).

ferry moves a running VM's disks with libvirt's block copy (QEMU drive-mirror):
the target file is written while the guest keeps running from the source, and
a dirty bitmap (the seed's Changed Block Tracking) catches blocks written
meanwhile. A powered-off VM's disks are copied the same way before it is
defined elsewhere. Each check is pure, ``(facts) -> list[Finding]``.
"""

from __future__ import annotations

import posixpath

from ferry.checks.facts import MoveKind, PreflightFacts
from ferry.checks.finding import Finding, Status
from ferry.model import Disk, Pool

# Disk devices that hold data a storage move can copy; CD-ROMs and floppies
# stay where they are (their ISO is read-only and is not ferry's to copy).
DATA_DEVICES = ("disk", "lun")


def pool_holding(pools: list[Pool], path: str) -> Pool | None:
    """The pool of one host whose folder holds ``path`` (the longest matching folder).

    ``..`` is resolved first, so a path cannot climb out of a datastore and count as in it.
    """
    path = posixpath.normpath(path)
    best: Pool | None = None
    for pool in pools:
        if not pool.path:
            continue
        folder = pool.path.rstrip("/") + "/"
        if path.startswith(folder) and (best is None or len(folder) > len(best.path or "")):
            best = pool
    return best


def moves_disks(facts: PreflightFacts) -> bool:
    return facts.request.dest_datastore is not None and facts.request.kind in (
        MoveKind.STORAGE, MoveKind.BOTH, MoveKind.COLD)


def moved_disks(facts: PreflightFacts) -> list[Disk]:
    """The disks this request copies: the ones named, else every writable data disk."""
    if not moves_disks(facts):
        return []
    wanted = facts.request.disks
    found: list[Disk] = []
    for disk in facts.vm.disks:
        if disk.device not in DATA_DEVICES or disk.source is None:
            continue
        if wanted and disk.target in wanted:
            found.append(disk)
        elif not wanted and not disk.readonly:
            # A read-only disk is shared content (a golden image): "all" leaves it alone.
            found.append(disk)
    return found


def chain_of(facts: PreflightFacts, disk: Disk) -> tuple[str, ...]:
    """Every file behind ``disk``, nearest first: what its image names, and what a running
    VM's live definition shows (libvirt read those from the images at start)."""
    image = facts.images.get(disk.source or "")
    found = list(image.backing if image is not None else ())
    found.extend(p for p in disk.backing_chain if p not in found)
    return tuple(found)


def target_pool(facts: PreflightFacts) -> Pool | None:
    name = facts.request.dest_datastore
    host = facts.dest
    return next((p for p in facts.inventory.pools_on(host) if p.name == name), None)


def _disk_objects(facts: PreflightFacts, disk: Disk) -> dict[str, str]:
    objects = {"vm": facts.vm.name, "disk": disk.target}
    if disk.source:
        objects["file"] = disk.source
    return objects


def _describe(disk: Disk) -> str:
    return f"disk {disk.target} ({disk.source})"


def disks_persistent(facts: PreflightFacts) -> list[Finding]:
    """Seed: "VM disks must be in persistent mode"; libvirt: no ``<transient/>``."""
    vm = facts.vm
    findings: list[Finding] = []
    known = {d.target for d in vm.disks}
    for target in facts.request.disks:
        if target not in known:
            findings.append(Finding(
                "storage.disk-unknown", Status.ERROR,
                f"VM {vm.name} has no disk {target}, which the request asks to move",
                remedy=f"name disks of {vm.name} that exist: {', '.join(sorted(known)) or 'none'}",
                objects={"vm": vm.name, "disk": target}))
    for disk in moved_disks(facts):
        if disk.transient:
            findings.append(Finding(
                "storage.disk-transient", Status.ERROR,
                f"{_describe(disk)} of VM {vm.name} is transient (independent non-persistent): "
                "its writes are thrown away at power-off, so there is nothing to move",
                remedy=f"make {disk.target} persistent (remove <transient/> from the VM "
                       "definition and restart it), or leave it out of the move",
                objects=_disk_objects(facts, disk)))
        else:
            findings.append(Finding(
                "storage.disk-persistent", Status.PASS,
                f"{_describe(disk)} of VM {vm.name} is persistent",
                objects=_disk_objects(facts, disk)))
    return findings


def no_snapshots(facts: PreflightFacts) -> list[Finding]:
    """Seed: "The VM must have no snapshots"; libvirt: snapshots and qcow2 backing chains.

    A block copy writes one flattened image; snapshots kept inside or beside the
    source would be lost or left pointing at files that are about to be deleted.
    """
    vm = facts.vm
    findings: list[Finding] = []
    if vm.snapshot_count > 0:
        findings.append(Finding(
            "storage.snapshots", Status.ERROR,
            f"VM {vm.name} has {vm.snapshot_count} snapshot(s); a VM with snapshots cannot "
            "have its disks moved",
            remedy=f"delete or merge the snapshots of {vm.name} (virsh snapshot-list "
                   f"{vm.name}; virsh snapshot-delete), then retry",
            objects={"vm": vm.name}))
    for disk in moved_disks(facts):
        chain = chain_of(facts, disk)
        if chain:
            findings.append(Finding(
                "storage.backing-chain", Status.ERROR,
                f"{_describe(disk)} of VM {vm.name} is an overlay on {chain[0]} "
                "(an external snapshot); the chain must be merged before the disk moves",
                remedy=f"merge the chain into one image (virsh blockpull {vm.name} "
                       f"{disk.target}, or blockcommit), then retry",
                objects={**_disk_objects(facts, disk), "backing_file": chain[0]}))
    if not findings:
        findings.append(Finding(
            "storage.no-snapshots", Status.PASS,
            f"VM {vm.name} has no snapshots and no backing chains on the disks to move",
            objects={"vm": vm.name}))
    return findings


def raw_device_mappings(facts: PreflightFacts) -> list[Finding]:
    """Seed: RDMs in virtual mode may be copied to files; physical mode moves the mapping only.

    libvirt: ``<disk type='block' device='disk'>`` is virtual mode (QEMU emulates
    the disk, so its data can be mirrored into a file); ``device='lun'`` is SCSI
    passthrough, where the guest talks to the LUN itself and only the definition
    moves.
    """
    vm = facts.vm
    fmt = facts.request.disk_format
    dest = facts.request.dest_datastore or "?"
    findings: list[Finding] = []
    for disk in moved_disks(facts):
        if disk.source_type != "block":
            continue
        objects = _disk_objects(facts, disk)
        if disk.device == "lun" and fmt != "same":
            findings.append(Finding(
                "storage.lun-conversion", Status.ERROR,
                f"disk {disk.target} of VM {vm.name} is a physical-mode LUN ({disk.source}); it "
                f"cannot be converted to a {fmt} file: the guest drives the LUN directly",
                remedy=f"move it with disk format 'same', or leave {disk.target} out of the move",
                objects=objects))
        elif disk.device == "lun":
            findings.append(Finding(
                "storage.lun-mapping-only", Status.WARNING,
                f"disk {disk.target} of VM {vm.name} is a physical-mode LUN ({disk.source}): "
                "only its mapping moves, its data stays on the LUN",
                remedy="nothing to do if that is intended; to move the data, migrate it "
                       "inside the guest or on the storage array",
                objects=objects))
        else:
            findings.append(Finding(
                "storage.block-to-file", Status.PASS,
                f"disk {disk.target} of VM {vm.name} is a virtual-mode block device "
                f"({disk.source}); its data will be copied into a file on datastore {dest}",
                objects={**objects, "datastore": dest}))
    return findings


def _disks_stay(facts: PreflightFacts, code: str, what: str) -> list[Finding] | None:
    """An n/a row when no datastore is named (a cold move between hosts only)."""
    if moves_disks(facts):
        return None
    return [Finding(code, Status.NOT_APPLICABLE,
                    f"{what} not checked: no target datastore is named, the disks of VM "
                    f"{facts.vm.name} stay where they are", objects={"vm": facts.vm.name})]


def datastores_visible(facts: PreflightFacts) -> list[Finding]:
    """Seed: the host running the VM must see the source and the target datastore."""
    if (skip := _disks_stay(facts, "storage.target-visible", "datastores")) is not None:
        return skip
    vm = facts.vm
    host = facts.dest
    name = facts.request.dest_datastore or ""
    objects = {"vm": vm.name, "host": host, "datastore": name}
    findings: list[Finding] = []
    pool = target_pool(facts)
    if pool is None:
        findings.append(Finding(
            "storage.target-missing", Status.ERROR,
            f"datastore {name} does not exist on host {host}, which will run VM {vm.name}",
            remedy=f"define storage pool {name} on {host}, or choose one of its datastores: "
                   + (", ".join(p.name for p in facts.inventory.pools_on(host)) or "none"),
            objects=objects))
    elif not pool.active:
        findings.append(Finding(
            "storage.target-inactive", Status.ERROR,
            f"datastore {name} exists on host {host} but is not started",
            remedy=f"start it on {host} (virsh pool-start {name})", objects=objects))
    else:
        findings.append(Finding(
            "storage.target-visible", Status.PASS,
            f"host {host} sees target datastore {name}", objects=objects))
    source_pools = facts.inventory.pools_on(vm.host)
    for disk in moved_disks(facts):
        if disk.source_type not in ("file", "volume") or disk.source is None:
            continue  # block devices: their own checks; no datastore is read
        src = pool_holding(source_pools, disk.source)
        if src is None:
            findings.append(Finding(
                "storage.source-unmanaged", Status.WARNING,
                f"{_describe(disk)} of VM {vm.name} is on no datastore of {vm.host}; it can be "
                "copied, but ferry cannot account for the space it frees",
                remedy=f"define a storage pool on {vm.host} for the folder of {disk.source}",
                objects={**_disk_objects(facts, disk), "host": vm.host}))
        else:
            findings.append(Finding(
                "storage.source-visible", Status.PASS,
                f"{_describe(disk)} of VM {vm.name} is read from datastore "
                f"{src.datastore or src.name} on {vm.host}",
                objects={**_disk_objects(facts, disk), "host": vm.host,
                         "datastore": src.datastore or src.name}))
    return findings


def bytes_needed(disk: Disk, disk_format: str, size: tuple[int, int]) -> int:
    """Target bytes one disk's copy takes, from its (capacity, allocation)."""
    capacity, allocation = size
    if disk.device == "lun":
        return 0  # only the mapping moves
    if disk_format == "thin":
        return allocation
    if disk_format in ("thick-lazy", "thick-eager"):
        return capacity
    # "same": qcow2 stays as sparse as it is; for raw, ferry cannot tell a sparse
    # file from a preallocated one, so it reserves the whole capacity.
    return allocation if disk.driver_format == "qcow2" else capacity


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def target_space(facts: PreflightFacts) -> list[Finding]:
    """The target datastore has the space the chosen disk format needs."""
    if (skip := _disks_stay(facts, "storage.space", "free space")) is not None:
        return skip
    vm = facts.vm
    pool = target_pool(facts)
    name = facts.request.dest_datastore or ""
    if pool is None:
        return [Finding(
            "storage.space", Status.NOT_APPLICABLE,
            f"free space not checked: datastore {name} does not exist on {facts.dest} "
            "(see storage.target-missing)",
            objects={"vm": vm.name, "datastore": name})]
    findings: list[Finding] = []
    total = 0
    for disk in moved_disks(facts):
        size = facts.disk_sizes.get(disk.target)
        if size is None and disk.device != "lun":
            findings.append(Finding(
                "storage.size-unverified", Status.WARNING,
                f"the size of {_describe(disk)} of VM {vm.name} is unknown, so the space it "
                f"needs on {name} was not verified",
                remedy="refresh the inventory so ferry can read the disk's capacity and "
                       "allocation (virsh domblkinfo)",
                objects=_disk_objects(facts, disk)))
            continue
        total += bytes_needed(disk, facts.request.disk_format, size or (0, 0))
    objects = {"vm": vm.name, "datastore": name, "host": pool.host}
    if total > pool.available:
        findings.append(Finding(
            "storage.space-insufficient", Status.ERROR,
            f"the disks of VM {vm.name} need {_gib(total)} as '{facts.request.disk_format}' on "
            f"datastore {name} of {pool.host}, which has {_gib(pool.available)} free",
            remedy=f"free {_gib(total - pool.available)} on {name}, choose thin format, or "
                   "choose another datastore",
            objects=objects))
    else:
        findings.append(Finding(
            "storage.space", Status.PASS,
            f"datastore {name} of {pool.host} has {_gib(pool.available)} free; the disks of "
            f"VM {vm.name} need {_gib(total)} as '{facts.request.disk_format}'",
            objects=objects))
    return findings


def single_instance(facts: PreflightFacts) -> list[Finding]:
    """Seed: the host needs "resources to support two instances of the VM".

    That is how ESX's self-VMotion works. ferry's block copy runs one QEMU
    process: it needs the target space (target_space) and a dirty bitmap of one
    bit per block, a few MiB, not a second copy of the guest's memory.
    """
    vm = facts.vm
    text = (f"Storage migration of VM {vm.name} runs one instance of the VM: QEMU mirrors "
            "its disks in place, needing only the target space and a small dirty bitmap, "
            "not the memory and CPUs of a second instance")
    if facts.request.kind is MoveKind.BOTH:
        text += ("; the destination host's memory and CPUs for the moving VM are checked "
                 "by host.memory and host.vcpus")
    return [Finding("storage.single-instance", Status.PASS, text, objects={"vm": vm.name})]

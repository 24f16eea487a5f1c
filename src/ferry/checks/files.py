"""Pre-flight checks over every host file a VM reads, the files behind its disks included.

A disk image can name a backing file in its header, and that file another: the
whole chain is what QEMU reads, and what a copy or a conversion flattens into
the new disk. The chain is read from the images themselves
(:class:`~ferry.checks.facts.ImageFacts`), since a powered-off VM's saved
definition names no backing file at all. ferry reads only files inside its
datastores: a file anywhere else on a host (``/etc``, ``/var/tmp``) could be
copied into a datastore, or read by the VM, and no move of ferry's does that.

Each check is pure, ``(facts) -> list[Finding]``.
"""

from __future__ import annotations

from ferry.checks.facts import LAYERED_FORMATS, MoveKind, PreflightFacts
from ferry.checks.finding import Finding, Status
from ferry.checks.storage import chain_of, moved_disks, pool_holding
from ferry.model import TARGET_FORMATS, Disk, FileUse


def judged_disks(facts: PreflightFacts) -> list[Disk]:
    """The layered images whose chains this move reads: the moved ones for a storage move
    on one host, all of them when the VM changes hosts (the destination opens them)."""
    disks = moved_disks(facts) if facts.request.kind is MoveKind.STORAGE else facts.vm.disks
    return [d for d in disks if d.source is not None and d.source_type in ("file", "volume")
            and ((d.driver_format or "raw") in LAYERED_FORMATS or d.backing_chain)]


def chain_files(facts: PreflightFacts) -> list[tuple[Disk, str]]:
    """(disk, backing file) for every file behind a disk this move reads."""
    return [(disk, path) for disk in judged_disks(facts) for path in chain_of(facts, disk)]


def files_inside(facts: PreflightFacts) -> list[Finding]:
    """Every file behind a disk lies inside ferry's datastores; its chain could be read."""
    vm = facts.vm
    pools = facts.inventory.pools_on(vm.host)
    findings: list[Finding] = []
    for disk in judged_disks(facts):
        objects = {"vm": vm.name, "disk": disk.target, "file": disk.source or ""}
        image = facts.images.get(disk.source or "")
        if image is None and pool_holding(pools, disk.source or "") is not None:
            findings.append(Finding(
                "storage.chain-unverified", Status.WARNING,
                f"the image of disk {disk.target} of VM {vm.name} ({disk.source}) could not be "
                f"read on {vm.host}, so the files behind it were not verified",
                remedy=f"check that {vm.host} answers and its datastores are started, then "
                       "check again", objects=objects))
            continue
        for path in chain_of(facts, disk):
            pool = pool_holding(pools, path)
            if pool is None:
                findings.append(Finding(
                    "storage.chain-outside", Status.ERROR,
                    f"disk {disk.target} of VM {vm.name} ({disk.source}) has backing file "
                    f"{path}, which is on no datastore of {vm.host}: ferry reads no file "
                    "outside its datastores into a VM's disk, nor lets a moved VM read one",
                    remedy=f"copy {path} into a datastore and rebase the image onto the "
                           f"copy (qemu-img rebase), or merge it into the image while the VM "
                           f"runs (virsh blockpull {vm.name} {disk.target})",
                    objects={**objects, "backing_file": path}))
            else:
                findings.append(Finding(
                    "storage.chain-inside", Status.PASS,
                    f"backing file {path} of disk {disk.target} of VM {vm.name} is on "
                    f"datastore {pool.datastore or pool.name}",
                    objects={**objects, "backing_file": path,
                             "datastore": pool.datastore or pool.name}))
        if image is not None and image.stopped is not None:
            findings.append(Finding(
                "storage.chain-unreadable", Status.ERROR,
                f"the files behind disk {disk.target} of VM {vm.name} could not all be read: "
                f"{image.stopped}",
                remedy=f"merge the chain of {disk.target} into one image inside a datastore",
                objects=objects))
    return findings


def formats_declared(facts: PreflightFacts) -> list[Finding]:
    """A disk converted to another format is read in the format its definition declares.

    libvirt converts a file in the format it guesses from its bytes; a raw disk whose
    guest wrote a qcow2 header would be read as qcow2, backing file and all. ferry
    converts only where the host reads the file as declared; a copy in the same
    format is byte for byte and needs no such guess.
    """
    vm = facts.vm
    target = facts.request.disk_format
    findings: list[Finding] = []
    for disk in moved_disks(facts):
        if disk.source_type not in ("file", "volume"):
            continue
        declared = disk.driver_format or "raw"
        converted = target in TARGET_FORMATS and TARGET_FORMATS[target][0] != declared
        objects = {"vm": vm.name, "disk": disk.target, "file": disk.source or "",
                   "format": declared}
        image = facts.images.get(disk.source or "")
        if not converted:
            findings.append(Finding(
                "storage.format-declared", Status.PASS,
                f"disk {disk.target} of VM {vm.name} keeps its format ({declared}): its file "
                "is copied byte for byte", objects=objects))
        elif image is None or image.read_as is None:
            findings.append(Finding(
                "storage.format-unverified", Status.ERROR,
                f"disk {disk.target} of VM {vm.name} ({disk.source}) is to be converted from "
                f"{declared}, but {vm.host} could not say how it reads the file",
                remedy="move it in its own format (--format same), or check that its "
                       "datastore is started and check again", objects=objects))
        elif image.read_as != declared:
            findings.append(Finding(
                "storage.format-mismatch", Status.ERROR,
                f"disk {disk.target} of VM {vm.name} ({disk.source}) is declared {declared}, "
                f"but its bytes read as {image.read_as}: a conversion would read it as "
                f"{image.read_as}, so ferry will not convert it",
                remedy="move it in its own format (--format same), which copies it byte for "
                       "byte", objects={**objects, "read_as": image.read_as}))
        else:
            findings.append(Finding(
                "storage.format-declared", Status.PASS,
                f"disk {disk.target} of VM {vm.name} is declared {declared} and reads as "
                f"{declared}: it is converted from what it is", objects=objects))
    return findings


def other_host_paths(facts: PreflightFacts) -> list[Finding]:
    """Host paths the VM uses that are not its content: firmware, output files, devices.

    Content files (kernel, NVRAM, shared folders) are judged with the disks by
    ``storage.shared``; these rows say what the destination must have of its own.
    """
    vm, dest = facts.vm, facts.dest
    if facts.request.dest_host in (None, vm.host):
        return []
    dest_datastores = {p.datastore for p in facts.inventory.pools_on(dest)
                       if p.active and p.datastore}
    pools = facts.inventory.pools_on(vm.host)
    findings: list[Finding] = []
    for item in vm.host_files:
        objects = {"vm": vm.name, "file": item.path, "host": dest}
        pool = pool_holding(pools, item.path)
        if item.use is FileUse.FIRMWARE:
            findings.append(Finding(
                "storage.firmware-per-host", Status.WARNING,
                f"{item.what} {item.path} of VM {vm.name} is installed on each host: {dest} "
                "opens its own copy, which ferry cannot compare with the source's",
                remedy=f"install the same firmware package version on {vm.host} and {dest}",
                objects=objects))
        elif item.use is FileUse.WRITTEN:
            shared = pool is not None and pool.datastore in dest_datastores
            findings.append(Finding(
                "storage.output-file", Status.PASS if shared else Status.WARNING,
                f"{item.what} {item.path} of VM {vm.name} is written on datastore "
                f"{pool.datastore or pool.name}, which {dest} sees" if shared and pool else
                f"{item.what} {item.path} of VM {vm.name} is on no datastore {dest} sees: "
                f"{dest} writes a new file at that path, and what was written so far stays "
                f"on {vm.host}",
                remedy="" if shared else f"make sure the folder of {item.path} exists on "
                f"{dest}, or put the file on a datastore both hosts share",
                objects=objects))
        elif item.use is FileUse.DEVICE:
            findings.append(Finding(
                "storage.host-device", Status.WARNING,
                f"{item.what} {item.path} of VM {vm.name} is a device or socket of the host: "
                f"{dest} needs its own, which ferry does not verify",
                remedy=f"check that {dest} has {item.path}", objects=objects))
    return findings

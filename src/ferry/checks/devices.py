"""Pre-flight checks on the VM's devices when it changes hosts: pinning, media, block disks.

Concept map: CPU affinity is ``<vcpupin>``, ``<vcpu cpuset=…>`` and
``<emulatorpin>``; a CD-ROM "mapped to a host device" is ``<disk
device='cdrom' type='block'>``; an RDM is a block-backed disk (``device='disk'``
virtual mode, ``device='lun'`` physical mode). Each check is pure,
``(facts) -> list[Finding]``.
"""

from __future__ import annotations

from ferry.checks.facts import PreflightFacts
from ferry.checks.finding import Finding, Status
from ferry.checks.host import pair
from ferry.checks.storage import moved_disks

MEDIA = ("cdrom", "floppy")
# The file each kind of drive holds: a CD-ROM an ISO, a floppy drive a floppy image.
MEDIA_IMAGE = {"cdrom": "ISO", "floppy": "floppy image"}


def media_remedy(vm: str, device: str, target: str, place: str) -> str:
    """Eject the medium, or give the drive an image of its own kind from ``place``.

    ``virsh change-media`` serves CD-ROM and floppy drives alike; ``--update``
    swaps the medium in one step.
    """
    image = MEDIA_IMAGE.get(device, "image")
    return (f"eject it ('virsh change-media {vm} {target} --eject'), or put the {image} on "
            f"{place} and load it from there ('virsh change-media {vm} {target} "
            f"NEW-PATH --update')")


def no_cpu_affinity(facts: PreflightFacts) -> list[Finding]:
    """Seed: a VM cannot be using CPU affinity (pinned to CPUs of its current host).

    Host CPU numbers mean nothing on another host, and libvirt would apply the
    same pinning there, possibly to CPUs that do not exist or are reserved.
    """
    vm = facts.vm
    pins = vm.affinity
    found: list[str] = []
    if pins.vcpupin:
        found.append(f"<vcpupin> to CPUs {', '.join(pins.vcpupin)}")
    if pins.vcpu_cpuset:
        found.append(f"<vcpu cpuset='{pins.vcpu_cpuset}'>")
    if pins.emulatorpin:
        found.append(f"<emulatorpin cpuset='{pins.emulatorpin}'>")
    if not found:
        return [Finding("vm.no-cpu-affinity", Status.PASS,
                        f"VM {vm.name} is not pinned to host CPUs", objects={"vm": vm.name})]
    return [Finding(
        "vm.cpu-affinity", Status.ERROR,
        f"VM {vm.name} is pinned to CPUs of host {vm.host}: {'; '.join(found)}",
        remedy=f"remove the pinning from {vm.name}'s definition (virsh edit; vcpupin/emulatorpin "
               "with all CPUs for the running VM), then retry",
        objects={"vm": vm.name, "host": vm.host, "pinning": "; ".join(found)})]


def removable_media(facts: PreflightFacts) -> list[Finding]:
    """Seed: CD-ROM and floppy drives cannot be mapped to a host device.

    An ISO file is fine when its datastore is shared: storage_shared judges that
    with the same probe-based datastore identity as the disks.
    """
    vm = facts.vm
    _, dest = pair(facts)
    findings: list[Finding] = []
    for disk in vm.disks:
        if disk.device not in MEDIA:
            continue
        objects = {"vm": vm.name, "disk": disk.target, "host": vm.host}
        if disk.source is None:
            findings.append(Finding(
                "device.media-empty", Status.PASS,
                f"{disk.device} {disk.target} of VM {vm.name} is empty", objects=objects))
        elif disk.source_type == "block":
            findings.append(Finding(
                "device.host-media", Status.ERROR,
                f"{disk.device} {disk.target} of VM {vm.name} is mapped to host device "
                f"{disk.source} of {vm.host}, which {dest} cannot give it",
                remedy=media_remedy(vm.name, disk.device, disk.target,
                                    "a datastore both hosts share"),
                objects={**objects, "device": disk.source}))
        else:
            findings.append(Finding(
                "device.media-file", Status.PASS,
                f"{disk.device} {disk.target} of VM {vm.name} holds file {disk.source}, not a "
                "host device (storage.shared judges its datastore)",
                objects={**objects, "file": disk.source}))
    return findings


def block_devices_on_dest(facts: PreflightFacts) -> list[Finding]:
    """Seed: RDMs work with VMotion; libvirt: the same device path must exist on the destination.

    Disks that the same request copies into a file (virtual mode, kind BOTH)
    need no device there; a physical-mode LUN always does.
    """
    vm = facts.vm
    _, dest = pair(facts)
    copied = {d.target for d in moved_disks(facts) if d.device == "disk"}
    findings: list[Finding] = []
    for disk in vm.disks:
        if disk.device not in ("disk", "lun") or disk.source_type != "block" or not disk.source:
            continue
        mode = "physical-mode LUN" if disk.device == "lun" else "virtual-mode block disk"
        objects = {"vm": vm.name, "disk": disk.target, "device": disk.source, "host": dest}
        if disk.target in copied:
            findings.append(Finding(
                "device.block-copied", Status.PASS,
                f"{mode} {disk.target} of VM {vm.name} ({disk.source}) is copied into a file on "
                f"the target datastore, so {dest} does not need the device", objects=objects))
            continue
        present = facts.block_devices_on_dest.get(disk.source)
        if present is None:
            findings.append(Finding(
                "device.block-unverified", Status.WARNING,
                f"whether {dest} has {disk.source}, the {mode} {disk.target} of VM {vm.name}, "
                "was not verified",
                remedy=f"check that {disk.source} exists on {dest} and is the same LUN "
                       "(compare /dev/disk/by-id), then refresh", objects=objects))
        elif not present:
            findings.append(Finding(
                "device.block-missing", Status.ERROR,
                f"{mode} {disk.target} of VM {vm.name} is {disk.source}, which does not exist "
                f"on host {dest}",
                remedy=f"present the same LUN to {dest} under the same path (prefer stable "
                       "/dev/disk/by-id paths in the VM definition)", objects=objects))
        else:
            findings.append(Finding(
                "device.block-present", Status.PASS,
                f"{mode} {disk.target} of VM {vm.name} ({disk.source}) exists on {dest}",
                objects=objects))
    return findings


def no_block_jobs(facts: PreflightFacts) -> list[Finding]:
    """A disk already being copied, pulled or committed cannot start another job or migrate."""
    vm = facts.vm
    if not facts.block_jobs:
        return [Finding("vm.no-block-job", Status.PASS,
                        f"no block job runs on the disks of VM {vm.name}", objects={"vm": vm.name})]
    disks = ", ".join(facts.block_jobs)
    return [Finding(
        "vm.block-job-running", Status.ERROR,
        f"a block job (copy, pull or commit) is running on disk(s) {disks} of VM {vm.name}",
        remedy=f"wait for it to finish, or cancel it ('virsh blockjob {vm.name} DISK --abort')",
        objects={"vm": vm.name, "disk": disks})]


def no_transient_disks(facts: PreflightFacts) -> list[Finding]:
    """libvirt refuses to live-migrate a VM with a transient disk.

    The disk's throw-away overlay exists only on the source host, so there is
    nothing the destination could open; libvirt 9.0 says "migration with
    transient disk is not supported". ferry refuses before trying.
    """
    vm = facts.vm
    transient = [d for d in vm.disks if d.transient]
    if not transient:
        return [Finding("device.no-transient-disk", Status.PASS,
                        f"no disk of VM {vm.name} is transient (independent non-persistent)",
                        objects={"vm": vm.name})]
    return [Finding(
        "device.transient-disk", Status.ERROR,
        f"disk {d.target} of VM {vm.name} ({d.source}) is transient: its changes live in an "
        "overlay on the source host only, and libvirt cannot live-migrate it",
        remedy="power the VM off and make the disk persistent (remove <transient/>), or move "
               "it powered off",
        objects={"vm": vm.name, "disk": d.target, "file": d.source or ""})
        for d in transient]

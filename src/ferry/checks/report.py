"""The pre-flight report: every requirement of the source document, judged for one move.

:data:`REQUIREMENTS` is the registry, as data: each requirement names its
checks and the kinds of move it applies to. :func:`preflight` runs all of them
and returns at least one row per requirement, in registry order: the check's
own rows (pass, warning, error), or one ``n/a`` row that says why the
requirement does not apply to this move. Nothing stops at the first failure,
so an admin sees everything to fix at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ferry.checks import cpu, devices, files, host, storage, vmotion
from ferry.checks.facts import MoveKind, PreflightFacts
from ferry.checks.finding import Finding, Status

Check = Callable[[PreflightFacts], list[Finding]]

HOST_LIVE = frozenset({MoveKind.HOST, MoveKind.BOTH})
HOST_ANY = frozenset({MoveKind.HOST, MoveKind.BOTH, MoveKind.COLD})
STORAGE_LIVE = frozenset({MoveKind.STORAGE, MoveKind.BOTH})
STORAGE_ANY = frozenset({MoveKind.STORAGE, MoveKind.BOTH, MoveKind.COLD})
LIVE = frozenset({MoveKind.HOST, MoveKind.STORAGE, MoveKind.BOTH})
COLD = frozenset({MoveKind.COLD})
ALL = frozenset(MoveKind)


@dataclass(frozen=True)
class Requirement:
    code: str  # code of its pass row, and of its n/a row
    title: str  # what is required, for n/a rows and the docs
    check: Check
    kinds: frozenset[MoveKind]
    nothing: str = "nothing to check"  # why, when the check found no object to judge


def _not_meaningful(code: str, text: str) -> Requirement:
    """A seed requirement with no counterpart in libvirt/QEMU: always an n/a row, with why."""
    def check(facts: PreflightFacts) -> list[Finding]:
        return [Finding(code, Status.NOT_APPLICABLE, text, objects={"vm": facts.vm.name})]
    return Requirement(code, text, check, ALL)


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("request.destination", "the destination is another registered host",
                vmotion.destination_known, HOST_ANY),
    Requirement("vm.running", "the VM is running (stable state)", vmotion.vm_running, LIVE),
    Requirement("vm.powered-off", "the VM is powered off", vmotion.vm_powered_off, COLD),
    Requirement("vm.no-block-job", "no block job runs on the VM", devices.no_block_jobs, LIVE),
    Requirement("host.migration-enabled", "both hosts have migration enabled and an address",
                host.migration_enabled, HOST_LIVE),
    Requirement("host.reachable", "the destination's migration address is reachable",
                host.reachability, HOST_LIVE),
    Requirement("link.speed", "a migration link of 1 Gbit/s or more, up",
                host.link_speed, HOST_LIVE),
    Requirement("link.mtu", "jumbo frames on the migration link", host.link_mtu, HOST_LIVE),
    Requirement("migration.protected", "migration streams encrypted (TLS), or clear text "
                "allowed by the admin for the host that cannot",
                host.traffic_protected, HOST_LIVE),
    _not_meaningful(
        "link.vmkernel-nic",
        "The Gigabit NIC 'on the VMkernel vSwitch': libvirt has no VMkernel vSwitch; the "
        "requirement applies to each host's migration interface and is checked as link.speed"),
    Requirement("host.not-in-maintenance", "the destination is not in maintenance mode",
                host.not_in_maintenance, HOST_ANY),
    Requirement("host.memory", "the destination has memory for the VM",
                host.memory_fits, HOST_LIVE),
    Requirement("host.vcpus", "the destination has CPUs for the VM's vCPUs",
                host.vcpus_fit, HOST_LIVE),
    Requirement("host.migration-slots", "at most max_migrations migrations per host",
                host.migration_slots, LIVE),
    Requirement("cpu.vendor", "same CPU vendor on both hosts", cpu.same_vendor, HOST_LIVE),
    Requirement("cpu.compatible", "the destination runs the VM's CPU definition",
                cpu.cpu_compatible, HOST_LIVE),
    Requirement("cpu.passthrough", "identical host CPUs for a host-passthrough VM",
                cpu.passthrough_identical, HOST_LIVE),
    Requirement("cpu.evc-mode", "a VM entering an EVC cluster uses no feature its mode hides",
                cpu.evc_mode_fits, HOST_LIVE),
    Requirement("storage.shared", "every file the VM uses is on storage the destination sees",
                vmotion.storage_shared, HOST_ANY, "the VM uses no files on the host"),
    Requirement("storage.chain-inside", "every file behind a disk is inside ferry's datastores",
                files.files_inside, ALL, "no disk of the VM is a file"),
    Requirement("storage.host-paths", "the destination has its own firmware, output folders "
                "and devices the VM names", files.other_host_paths, HOST_ANY,
                "the VM names no firmware, output file or device of the host"),
    Requirement("network.present", "every network exists on the destination, same name",
                vmotion.networks_present, HOST_ANY, "the VM has no interface on a libvirt network"),
    Requirement("network.portgroup", "every port group exists on the destination, same name",
                vmotion.portgroups_present, HOST_ANY, "no interface of the VM uses a port group"),
    Requirement("network.uplinked", "no interface on an internal-only network",
                vmotion.no_internal_networks, HOST_LIVE,
                "the VM has no interface on a libvirt network"),
    Requirement("vm.no-cpu-affinity", "no CPU affinity", devices.no_cpu_affinity, HOST_LIVE),
    Requirement("device.no-transient-disk", "no transient disk (libvirt cannot move one live)",
                devices.no_transient_disks, HOST_LIVE),
    Requirement("device.media", "no CD-ROM or floppy mapped to a host device",
                devices.removable_media, HOST_LIVE, "the VM has no CD-ROM or floppy drive"),
    Requirement("device.block", "block-backed disks exist on the destination",
                devices.block_devices_on_dest, HOST_LIVE, "the VM has no block-backed disk"),
    _not_meaningful(
        "vm.swap-file",
        "The .vswp swap file: QEMU keeps no swap file per VM; the guest's memory is copied "
        "over the wire from the source's RAM, so there is no file the destination must reach"),
    _not_meaningful(
        "license.vmotion",
        "VMotion licence: libvirt and QEMU need no licence to migrate a running VM"),
    Requirement("storage.disk-persistent", "the disks to move are persistent",
                storage.disks_persistent, STORAGE_LIVE, "no disk of the VM is to be moved"),
    # Cold moves too: the snapshots' metadata stays with the source's libvirt and
    # internal snapshots would be lost in the copy.
    Requirement("storage.no-snapshots", "the VM has no snapshots", storage.no_snapshots,
                STORAGE_ANY),
    Requirement("storage.raw-device", "raw device mappings: virtual mode copied, physical "
                "mode mapping only", storage.raw_device_mappings, STORAGE_LIVE,
                "no block-backed disk is to be moved"),
    Requirement("storage.format-declared", "a converted disk is read in the format it is "
                "declared in", files.formats_declared, COLD, "no disk is to be moved"),
    Requirement("storage.target-visible", "the host sees the source and target datastores",
                storage.datastores_visible, STORAGE_ANY),
    Requirement("storage.space", "the target datastore has the space the format needs",
                storage.target_space, STORAGE_ANY),
    Requirement("storage.single-instance", "resources for the VM during the disk copy",
                storage.single_instance, STORAGE_LIVE),
    _not_meaningful(
        "storage.vmotion-config",
        "ESX 3.5's VMotion configuration for Storage VMotion: ferry copies disks with a block "
        "copy inside the host running the VM, which needs no migration address or link"),
    _not_meaningful(
        "license.svmotion",
        "Storage VMotion licence: libvirt's block copy needs no licence"),
)

KIND_TEXT = {
    MoveKind.HOST: "a live migration to another host",
    MoveKind.STORAGE: "a live storage migration",
    MoveKind.BOTH: "a live migration of host and storage together",
    MoveKind.COLD: "a cold migration",
}


def _why_not(req: Requirement, facts: PreflightFacts) -> str:
    """Why a requirement does not apply to this kind of move, in the admin's terms."""
    kind, vm = facts.request.kind, facts.vm
    if kind is MoveKind.STORAGE and MoveKind.HOST in req.kinds:
        because = f"VM {vm.name} stays on host {vm.host}; only its disks move"
    elif kind is MoveKind.HOST and MoveKind.STORAGE in req.kinds:
        because = f"the disks of VM {vm.name} stay on their datastores"
    elif kind is MoveKind.COLD and MoveKind.HOST in req.kinds:
        because = f"VM {vm.name} moves powered off and no running state crosses the network"
    elif kind is MoveKind.COLD:
        because = (f"VM {vm.name} moves powered off and its disks are copied as files, not "
                   "mirrored while it runs")
    else:
        because = "it applies only to " + " and ".join(KIND_TEXT[k] for k in sorted(req.kinds))
    return f"{req.title}: not checked for {KIND_TEXT[kind]}, since {because}"


def preflight(facts: PreflightFacts) -> list[Finding]:
    """One or more rows per requirement, in registry order; every failing row, never just one."""
    findings: list[Finding] = []
    kind = facts.request.kind
    for req in REQUIREMENTS:
        if kind not in req.kinds:
            findings.append(Finding(req.code, Status.NOT_APPLICABLE, _why_not(req, facts),
                                    objects={"vm": facts.vm.name}))
            continue
        rows = req.check(facts)
        if not rows:
            rows = [Finding(req.code, Status.NOT_APPLICABLE,
                            f"{req.title}: {req.nothing} (VM {facts.vm.name})",
                            objects={"vm": facts.vm.name})]
        findings.extend(rows)
    return findings


def requirements_for(kind: MoveKind) -> list[Requirement]:
    """The requirements a move of ``kind`` is judged on (the others give n/a rows)."""
    return [r for r in REQUIREMENTS if kind in r.kinds]

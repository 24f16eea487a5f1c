"""What one live migration asks of libvirt: its flags and typed parameters, built from the
move's options alone (pure), so every combination is unit-tested without a host. The
seam's ``migrate`` reads what only the host has (the VM's definitions, for disks copied
with the memory) and hands the result to ``virDomainMigrateToURI3``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libvirt

from ferry.errors import VirtError
from ferry.virt import domxml
from ferry.virt.seam.data import MigrationOptions

# Every live move: peer to peer, the definition moved with the VM, and the move abandoned
# (the VM kept on its source) if a disk copy fails.
BASE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
              | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
              | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)


@dataclass(frozen=True)
class Definitions:
    """The VM's running and saved definitions (secure, migratable), read from its host."""

    live: str
    saved: str


def migration_flags(options: MigrationOptions) -> int:
    flags = BASE_FLAGS
    if options.tls:
        # QEMU's own TLS, memory and NBD disk streams alike; the destination's
        # certificate is checked against the migration address the URI names.
        flags |= libvirt.VIR_MIGRATE_TLS
    if options.shared_storage_proven:
        # libvirt cannot see that a folder is shared; ferry's probe did.
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    if options.allow_postcopy or options.postcopy_resume:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if options.postcopy_resume:
        # The interrupted move, asked again with its own flags: libvirt reconnects the
        # two QEMUs and the destination fetches the pages it still lacks.
        flags |= libvirt.VIR_MIGRATE_POSTCOPY_RESUME
    if options.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if options.copy_disks:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    return int(flags)


def migration_params(options: MigrationOptions, vm: str,
                     definitions: Definitions | None = None) -> dict[str, Any]:
    """The typed parameters; ``definitions`` is needed when disks are copied (VirtError
    names the VM otherwise, or when a disk to copy is not in them)."""
    params: dict[str, Any] = {}
    if options.migration_address:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{options.migration_address}"
    if options.auto_converge and options.auto_converge_initial_pct is not None:
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] = int(
            options.auto_converge_initial_pct)
    if options.auto_converge and options.auto_converge_increment_pct is not None:
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] = int(
            options.auto_converge_increment_pct)
    if options.bandwidth_mibps:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(options.bandwidth_mibps)
        if options.allow_postcopy:  # QEMU's post-copy phase has a limit of its own
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = int(options.bandwidth_mibps)
    if options.copy_disks:
        if definitions is None:
            raise VirtError(f"VM {vm}: its definitions are needed to copy its disks")
        files = {c.target: (c.path, c.fmt) for c in options.copy_disks}
        try:
            params.update({
                libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(files),
                # The running VM on the destination opens the new files ...
                libvirt.VIR_MIGRATE_PARAM_DEST_XML: domxml.retarget_disks(definitions.live,
                                                                          files),
                # ... and so does its saved definition (libvirt would keep the old paths).
                libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: domxml.retarget_disks(
                    definitions.saved, files),
            })
        except KeyError as err:
            raise VirtError(f"VM {vm} has no disk {err.args[0]}") from None
    return params

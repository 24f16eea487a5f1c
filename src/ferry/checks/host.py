"""Pre-flight checks on the two hosts and the link between them (the seed's VMotion setup).

The seed's VMkernel port with VMotion enabled is, in ferry, a host's migration
address plus a "migration enabled" flag; ``vmkping`` is a reachability probe
made from the source's side. Each check is pure, ``(facts) -> list[Finding]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ferry.checks.facts import HostSettings, LinkFacts, MigrationTls, MoveKind, PreflightFacts
from ferry.checks.finding import Finding, Status

GIGABIT_MBPS = 1000
JUMBO_MTU = 9000


def settings_for(facts: PreflightFacts, host: str) -> HostSettings:
    """The admin's declared settings; else the same fields of the inventory's host record."""
    declared = facts.settings.get(host)
    if declared is not None:
        return declared
    record = facts.inventory.hosts.get(host)
    return HostSettings() if record is None else HostSettings.of(record)


def pair(facts: PreflightFacts) -> tuple[str, str]:
    """(source, destination) of a host move; the destination is the source if none is named."""
    return facts.vm.host, facts.dest


def migration_enabled(facts: PreflightFacts) -> list[Finding]:
    """Both hosts take part in migrations and have a migration address (the VMkernel port)."""
    findings: list[Finding] = []
    for host in dict.fromkeys(pair(facts)):
        s = settings_for(facts, host)
        if not s.migration_enabled:
            findings.append(Finding(
                "host.migration-disabled", Status.ERROR,
                f"migration is disabled on host {host}",
                remedy=f"enable migration in the settings of host {host}",
                objects={"host": host}))
        if not s.migration_address:
            findings.append(Finding(
                "host.no-migration-address", Status.ERROR,
                f"host {host} has no migration address, so no migration traffic can reach it",
                remedy=f"set the migration address of host {host} to its address on the "
                       "migration network",
                objects={"host": host}))
        if s.migration_enabled and s.migration_address:
            findings.append(Finding(
                "host.migration-enabled", Status.PASS,
                f"host {host} takes part in migrations at {s.migration_address}",
                objects={"host": host, "address": s.migration_address}))
    return findings


def reachability(facts: PreflightFacts) -> list[Finding]:
    """The destination's migration address answers from the source (the seed's vmkping)."""
    source, dest = pair(facts)
    address = settings_for(facts, dest).migration_address or "(no address)"
    objects = {"source_host": source, "dest_host": dest, "address": address}
    probe = facts.reachability
    if probe is None:
        return [Finding(
            "host.reachability-unverified", Status.WARNING,
            f"whether {source} reaches {dest} at {address} was not verified",
            remedy=f"check that {source} can connect to {address} (ping, and libvirt's "
                   "migration ports); refresh the hosts so ferry probes it",
            objects=objects)]
    if not probe.reachable:
        detail = f": {probe.detail}" if probe.detail else ""
        return [Finding(
            "host.unreachable", Status.ERROR,
            f"host {source} cannot reach destination {dest} at its migration address "
            f"{address}{detail}",
            remedy=f"fix routing/firewall between {source} and {address} (libvirt's migration "
                   f"ports 49152-49215 and its daemon port), or correct {dest}'s migration address",
            objects=objects)]
    return [Finding("host.reachable", Status.PASS,
                    f"host {source} reaches {dest} at {address}", objects=objects)]


def _link(facts: PreflightFacts, host: str) -> tuple[str | None, LinkFacts | None]:
    return settings_for(facts, host).migration_interface, facts.links.get(host)


def link_speed(facts: PreflightFacts) -> list[Finding]:
    """Seed: a Gigabit adapter or faster; slower works but is not recommended. Down: error."""
    findings: list[Finding] = []
    for host in dict.fromkeys(pair(facts)):
        iface, link = _link(facts, host)
        objects = {"host": host, "interface": iface or ""}
        if iface is None:
            findings.append(Finding(
                "link.no-interface", Status.WARNING,
                f"the migration link of host {host} cannot be checked: no migration interface "
                "is set for it",
                remedy=f"set the migration interface (the NIC carrying migration traffic) in "
                       f"the settings of host {host}",
                objects={"host": host}))
        elif link is None:
            findings.append(Finding(
                "link.unverified", Status.WARNING,
                f"the state and speed of {iface} on host {host} were not read",
                remedy=f"refresh host {host}; check that interface {iface} exists there",
                objects=objects))
        elif not link.up:
            findings.append(Finding(
                "link.down", Status.ERROR,
                f"migration interface {link.interface} of host {host} is down",
                remedy=f"bring {link.interface} up on {host} (cable, switch port, 'ip link set "
                       f"{link.interface} up')",
                objects=objects))
        elif link.speed_mbps is None:
            findings.append(Finding(
                "link.speed-unknown", Status.WARNING,
                f"interface {link.interface} of host {host} is up but reports no speed",
                remedy=f"check with 'ethtool {link.interface}' on {host} that it runs at 1 Gbit/s "
                       "or more",
                objects=objects))
        elif link.speed_mbps < GIGABIT_MBPS:
            findings.append(Finding(
                "link.slow", Status.WARNING,
                f"migration interface {link.interface} of host {host} runs at "
                f"{link.speed_mbps} Mbit/s, below 1 Gbit/s: migrations will be slow and busy "
                "guests may not converge",
                remedy=f"carry migration traffic of {host} on a 1 Gbit/s or faster NIC",
                objects=objects))
        else:
            findings.append(Finding(
                "link.speed", Status.PASS,
                f"migration interface {link.interface} of host {host} is up at "
                f"{link.speed_mbps} Mbit/s", objects=objects))
    return findings


def link_mtu(facts: PreflightFacts) -> list[Finding]:
    """Seed: "Using jumbo frames is recommended for best performance"."""
    findings: list[Finding] = []
    for host in dict.fromkeys(pair(facts)):
        iface, link = _link(facts, host)
        if iface is None or link is None:
            findings.append(Finding(
                "link.mtu", Status.NOT_APPLICABLE,
                f"MTU of host {host}'s migration link not checked: the link is unknown "
                "(see link.no-interface / link.unverified)", objects={"host": host}))
            continue
        objects = {"host": host, "interface": link.interface}
        if link.mtu is None:
            findings.append(Finding(
                "link.mtu-unverified", Status.WARNING,
                f"interface {link.interface} of host {host} reports no MTU",
                remedy=f"check with 'ip link show {link.interface}' on {host}", objects=objects))
        elif link.mtu < JUMBO_MTU:
            findings.append(Finding(
                "link.mtu-small", Status.WARNING,
                f"migration interface {link.interface} of host {host} has MTU {link.mtu}; "
                f"jumbo frames (MTU {JUMBO_MTU}) are recommended for migration traffic",
                remedy=f"set MTU {JUMBO_MTU} on {link.interface} of {host}, on the peer hosts "
                       "and on the switch ports between them",
                objects=objects))
        else:
            findings.append(Finding(
                "link.mtu", Status.PASS,
                f"migration interface {link.interface} of host {host} uses jumbo frames "
                f"(MTU {link.mtu})", objects=objects))
    return findings


# The names QEMU looks for in its certificate folder (qemu.conf's comments list them).
CA_CERT = "ca-cert.pem"
SERVER_FILES = (CA_CERT, "server-cert.pem", "server-key.pem")
CLIENT_FILES = (CA_CERT, "client-cert.pem", "client-key.pem")
# The codes of the row: encrypted (or isolated and allowed), clear text allowed, refused.
PROTECTED, CLEARTEXT, NO_TLS, TLS_UNVERIFIED = (
    "migration.protected", "migration.cleartext", "migration.no-tls", "migration.tls-unverified")


@dataclass(frozen=True)
class TlsGap:
    """A host that cannot play its side of a TLS migration, and the files it lacks."""

    host: str
    side: str  # "send" (the source) or "receive" (the destination)
    cert_dir: str
    missing: tuple[str, ...]


def tls_gaps(source: str, source_tls: MigrationTls, dest: str,
             dest_tls: MigrationTls) -> list[TlsGap]:
    """What keeps the pair from a TLS migration: the destination's QEMU is the TLS
    server; the source's is the client, with a certificate of its own only when the
    destination demands one."""
    wanted = CLIENT_FILES if dest_tls.verify_clients else (CA_CERT,)
    gaps = []
    for host, side, tls, files in ((source, "send", source_tls, wanted),
                                   (dest, "receive", dest_tls, SERVER_FILES)):
        missing = tuple(f for f in files if f not in tls.files)
        if missing:
            gaps.append(TlsGap(host, side, tls.cert_dir, missing))
    return gaps


def stream_encrypted(findings: Iterable[Finding]) -> bool:
    """Whether a move the pre-flight allowed asks QEMU for TLS: always, unless the row
    says the admin allowed clear text for a pair that cannot do TLS."""
    return not any(f.code == CLEARTEXT for f in findings)


def traffic_protected(facts: PreflightFacts) -> list[Finding]:
    """Seed: migration traffic is clear text; isolate it. ferry encrypts it (QEMU's TLS,
    memory and disks alike) and refuses a pair that cannot, unless the admin allowed
    clear text for the host that cannot."""
    source, dest = pair(facts)
    objects = {"source_host": source, "dest_host": dest, "vm": facts.vm.name}
    what = "memory and disks" if facts.request.kind is MoveKind.BOTH else "memory"
    source_tls, dest_tls = facts.migration_tls.get(source), facts.migration_tls.get(dest)
    if source_tls is None or dest_tls is None:
        unread = [h for h, t in ((source, source_tls), (dest, dest_tls)) if t is None]
        return [Finding(
            TLS_UNVERIFIED, Status.WARNING,
            f"could not read the TLS migration set-up of {', '.join(unread)}: the move asks "
            "for TLS, and fails with the VM still on its source if a host cannot do it",
            objects=objects)]
    gaps = tls_gaps(source, source_tls, dest, dest_tls)
    if not gaps:
        return [Finding(PROTECTED, Status.PASS,
                        f"the {what} of VM {facts.vm.name} crosses from {source} to {dest} "
                        "encrypted (TLS, with certificates both hosts verify)", objects=objects)]
    refused = [g for g in gaps if not settings_for(facts, g.host).allow_cleartext_migration]
    if refused:
        return [Finding(
            NO_TLS, Status.ERROR,
            f"host {g.host} cannot {g.side} an encrypted migration: its QEMU certificate "
            f"folder {g.cert_dir} lacks {', '.join(g.missing)}",
            remedy=f"install QEMU's migration certificates on {g.host} in the folder "
                   "qemu.conf's migrate_tls_x509_cert_dir names "
                   f"({g.cert_dir}), or accept clear text for it: "
                   f"ferry host set {g.host} --allow-cleartext-migration on",
            objects={**objects, "host": g.host}) for g in refused]
    exposed = [h for h in dict.fromkeys((source, dest))
               if not settings_for(facts, h).migration_network_isolated]
    sniffable = (f"; the migration network of {', '.join(exposed)} is not declared "
                 "isolated: it can be sniffed" if exposed
                 else "; both hosts carry it on a network declared isolated")
    lacking = ", ".join(f"{g.host} lacks {', '.join(g.missing)} in {g.cert_dir}" for g in gaps)
    return [Finding(
        CLEARTEXT, Status.WARNING,
        f"the {what} of VM {facts.vm.name} will cross from {source} to {dest} in clear text, "
        f"as the admin allowed ({lacking}){sniffable}",
        remedy="install QEMU's migration certificates (qemu.conf migrate_tls_x509_cert_dir) "
               "on " + ", ".join(g.host for g in gaps) + ", then turn clear text off again: "
               "ferry host set HOST --allow-cleartext-migration off",
        objects=objects)]


def not_in_maintenance(facts: PreflightFacts) -> list[Finding]:
    """A host in maintenance mode is being emptied: nothing may move onto it."""
    source, dest = pair(facts)
    if dest == source:
        # A cold move between datastores only: the VM is already on its host.
        return [Finding("host.not-in-maintenance", Status.NOT_APPLICABLE,
                        f"VM {facts.vm.name} stays on host {source}; no host receives it",
                        objects={"vm": facts.vm.name, "host": source})]
    if settings_for(facts, dest).maintenance:
        return [Finding(
            "host.maintenance", Status.ERROR,
            f"destination host {dest} is in maintenance mode",
            remedy=f"take {dest} out of maintenance mode, or choose another host",
            objects={"host": dest})]
    return [Finding("host.not-in-maintenance", Status.PASS,
                    f"destination host {dest} is not in maintenance mode", objects={"host": dest})]


def memory_fits(facts: PreflightFacts) -> list[Finding]:
    """The destination holds the VM's memory on top of what its running VMs already use."""
    vm = facts.vm
    _, dest = pair(facts)
    limit = settings_for(facts, dest).memory_limit_mib
    record = facts.inventory.hosts.get(dest)
    capacity = limit or (record.memory_mib if record else 0)
    source = "memory limit" if limit else "memory"
    objects = {"vm": vm.name, "host": dest}
    if capacity <= 0:
        return [Finding("host.memory-unverified", Status.WARNING,
                        f"the memory of host {dest} is unknown; room for VM {vm.name} "
                        f"({vm.memory_mib} MiB) was not verified",
                        remedy=f"refresh host {dest}", objects=objects)]
    committed = facts.memory_committed_mib.get(dest)
    used = committed or 0
    if vm.memory_mib + used > capacity:
        return [Finding(
            "host.memory-insufficient", Status.ERROR,
            f"VM {vm.name} needs {vm.memory_mib} MiB; host {dest} has {used} MiB of its "
            f"{capacity} MiB {source} committed to running VMs, leaving "
            f"{max(capacity - used, 0)} MiB",
            remedy=f"free {vm.memory_mib + used - capacity} MiB on {dest} (move or stop VMs), "
                   f"raise its memory limit, or choose another host",
            objects=objects)]
    if committed is None:
        return [Finding("host.memory-unverified", Status.WARNING,
                        f"VM {vm.name} ({vm.memory_mib} MiB) fits the {capacity} MiB {source} of "
                        f"{dest}, but the memory its running VMs use was not read",
                        remedy=f"refresh host {dest}", objects=objects)]
    return [Finding("host.memory", Status.PASS,
                    f"host {dest} has room for VM {vm.name}: {used} + {vm.memory_mib} MiB of "
                    f"{capacity} MiB {source}", objects=objects)]


def vcpus_fit(facts: PreflightFacts) -> list[Finding]:
    """The VM's vCPUs do not outnumber the host's CPUs (overcommit across VMs is normal)."""
    vm = facts.vm
    _, dest = pair(facts)
    record = facts.inventory.hosts.get(dest)
    cpus = record.cpus if record else 0
    objects = {"vm": vm.name, "host": dest}
    if cpus <= 0:
        return [Finding("host.vcpus-unverified", Status.WARNING,
                        f"the CPU count of host {dest} is unknown; VM {vm.name}'s {vm.vcpus} "
                        "vCPUs were not checked against it",
                        remedy=f"refresh host {dest}", objects=objects)]
    if vm.vcpus > cpus:
        return [Finding("host.vcpus-insufficient", Status.ERROR,
                        f"VM {vm.name} has {vm.vcpus} vCPUs but host {dest} has only {cpus} CPUs",
                        remedy=f"reduce the vCPUs of {vm.name} to {cpus} or fewer, or choose a "
                               "host with more CPUs",
                        objects=objects)]
    return [Finding("host.vcpus", Status.PASS,
                    f"host {dest} has {cpus} CPUs for the {vm.vcpus} vCPUs of VM {vm.name}",
                    objects=objects)]


def migration_slots(facts: PreflightFacts) -> list[Finding]:
    """Seed: a host takes part in up to two migrations at once; more wait in the queue."""
    hosts = (facts.vm.host,) if facts.request.kind is MoveKind.STORAGE else pair(facts)
    findings: list[Finding] = []
    for host in dict.fromkeys(hosts):
        limit = settings_for(facts, host).max_migrations
        running = facts.migrations_running.get(host, 0)
        if running >= limit:
            findings.append(Finding(
                "host.migrations-queued", Status.WARNING,
                f"host {host} already runs {running} migration(s), its limit is {limit}: this "
                "one will be queued until a slot frees",
                remedy=f"wait, or raise the migration limit of {host}", objects={"host": host}))
        else:
            findings.append(Finding(
                "host.migration-slots", Status.PASS,
                f"host {host} runs {running} of at most {limit} migrations",
                objects={"host": host}))
    return findings

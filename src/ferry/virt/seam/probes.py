"""Probes: what the pre-flight and the connection pool ask of a host about its links,
its devices, and whether it still answers."""

from __future__ import annotations

from typing import Protocol

from ferry.checks.facts import LinkFacts, MigrationTls, Reachability
from ferry.virt.seam.data import CloseCallback
from ferry.virt.seam.named import Named


class Probes(Named, Protocol):
    def probe_peer(self, peer_uri: str, probe_name: str) -> Reachability:
        """Whether this host's libvirtd can reach the libvirtd at ``peer_uri``.

        Asked of the source about the destination, so it tests the path
        migration uses, from the side that opens it. A definition named
        ``probe_name`` may be left on the peer: the caller removes it there.
        """
        ...

    def interface_link(self, name: str) -> LinkFacts | None:
        """A host NIC's state, speed and MTU; None if the host has no such interface."""
        ...

    def migration_tls(self) -> MigrationTls:
        """The host's TLS migration set-up as its files say: the certificate folder its
        qemu.conf names, what that folder holds, and whether it verifies clients."""
        ...

    def block_device_present(self, path: str) -> bool:
        """Whether this host has the block device (or its symlink) at ``path``."""
        ...

    def alive(self) -> bool:
        """Whether the connection still works (keepalive has not given up on it)."""
        ...

    def on_close(self, callback: CloseCallback) -> None:
        """Have ``callback(reason)`` called once when the host closes this connection
        (its libvirtd stopped, or the keepalive gave up on a dead link)."""
        ...

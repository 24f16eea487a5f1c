"""The real :class:`~ferry.virt.base.HostConnection`: libvirt over TLS (or SSH).

This module opens and closes the connection; its calls are the mixins of the
other ``virt/libvirt_*.py`` modules, one per capability of the seam
(:mod:`ferry.virt.seam`): inventory, power, storage (volumes), migration, block
copy, CPU and probes, all over :mod:`ferry.virt.libvirt_calls` (errors
translated). Together they are the libvirt seam: the only modules of ferry that
import libvirt. Nothing above it needs to know libvirt's error codes.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import libvirt

from ferry import config
from ferry.errors import ConfigError
from ferry.virt.base import Connector
from ferry.virt.libvirt_blockcopy import BlockCopyCalls
from ferry.virt.libvirt_calls import libvirt_call, translate
from ferry.virt.libvirt_cpu import CpuCalls
from ferry.virt.libvirt_inventory import InventoryCalls
from ferry.virt.libvirt_migration import MigrationCalls
from ferry.virt.libvirt_probes import ProbeCalls

_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ensure_event_loop() -> None:
    """libvirt delivers events and keepalives only while someone runs its loop."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def connection_uri(uri: str) -> str:
    """The URI ferry itself opens: the user's URI plus ferry's client PKI for TLS."""
    parts = urlsplit(uri)
    if not parts.scheme.endswith("+tls"):
        return uri
    pki = config.pki_dir()
    if not (pki / "clientcert.pem").exists():
        raise ConfigError(f"no TLS client certificate in {pki}: install cacert.pem, "
                          "clientcert.pem and clientkey.pem there")
    query = urlencode({"pkipath": str(pki), "no_tty": "1"})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class LibvirtHost(InventoryCalls, BlockCopyCalls, MigrationCalls, CpuCalls, ProbeCalls):
    """One host's libvirtd, reached by URI."""

    def __init__(self, name: str, uri: str) -> None:
        _ensure_event_loop()
        self.name = name
        self.uri = uri
        with libvirt_call(f"cannot connect to host {name} at {uri}"):
            self._conn: Any = libvirt.open(connection_uri(uri))
        try:
            self._conn.setKeepAlive(5, 3)
        except libvirt.libvirtError as err:
            # An in-process driver (test:///default) has no link to keep alive.
            if err.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise translate(err, f"host {name}: keepalive") from err
        self._callbacks: list[int] = []
        self._close_watched = False

    def close(self) -> None:
        if self._close_watched:
            self._close_watched = False
            try:
                self._conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass  # the connection is already gone
        for cid in self._callbacks:
            try:
                self._conn.domainEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass  # already gone with the connection
        self._callbacks.clear()
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass  # closing a dead connection is not an error worth raising


def open_host(name: str, uri: str) -> LibvirtHost:
    return LibvirtHost(name, uri)


_OPENS_HOST_CONNECTIONS: Connector = open_host  # mypy proves LibvirtHost is the whole seam

"""What the pre-flight and the connection pool probe on a host through libvirt.

Part of the libvirt seam (see :mod:`ferry.virt.libvirt_calls`): the calls of
:class:`~ferry.virt.seam.probes.Probes`, mixed into
:class:`ferry.virt.libvirt_host.LibvirtHost`.
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any
from xml.sax.saxutils import escape

import libvirt

from ferry.checks.facts import LinkFacts, MigrationTls, Reachability
from ferry.virt import domxml, qemuconf
from ferry.virt.base import CloseCallback
from ferry.virt.libvirt_calls import PROBE_POOL_PREFIX, translate
from ferry.virt.libvirt_storage import StorageCalls

# A probe's pool lives for a few libvirt calls; wait that long for a folder to free.
_FOLDER_TRIES = 100
_FOLDER_WAIT_S = 0.05

_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "a read or write on it failed",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "the host's libvirtd closed it (stopped or restarted)",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "the host stopped answering keepalives",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by ferry",
}


class ProbeCalls(StorageCalls):
    """A host's links, devices and liveness (a device is seen as a volume of a pool)."""

    _close_watched: bool  # on_close registered a callback, unregistered when the host closes

    def interface_link(self, name: str) -> LinkFacts | None:
        try:
            iface = self._conn.interfaceLookupByName(name)
            root = ET.fromstring(iface.XMLDesc(0))
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
                return None
            raise translate(err, f"host {self.name}: interface {name}") from err
        link = root.find("link")
        mtu = root.find("mtu")
        speed = link.get("speed") if link is not None else None
        return LinkFacts(
            interface=name,
            up=link is None or link.get("state", "up") == "up",
            speed_mbps=int(speed) if speed and speed.isdigit() else None,
            mtu=int(mtu.get("size", "0")) if mtu is not None else None,
        )


    def probe_peer(self, peer_uri: str, probe_name: str) -> Reachability:
        # An offline peer-to-peer migration of an empty definition: this host's
        # libvirtd opens the same TLS connection to the peer that a live
        # migration opens, and nothing runs anywhere.
        xml = (f"<domain type='qemu'><name>{escape(probe_name)}</name>"
               "<memory unit='MiB'>16</memory><os><type arch='x86_64'>hvm</type></os>"
               "</domain>")
        dom = self._call("define reachability probe", lambda: self._conn.defineXML(xml))
        flags = (libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PEER2PEER
                 | libvirt.VIR_MIGRATE_PERSIST_DEST)
        try:
            dom.migrateToURI3(peer_uri, {}, flags)
            return Reachability(True, f"{self.name} reached {peer_uri}")
        except libvirt.libvirtError as err:
            return Reachability(False, err.get_error_message() or str(err))
        finally:
            try:
                dom.undefine()
            except libvirt.libvirtError:
                pass  # already gone

    def alive(self) -> bool:
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    def on_close(self, callback: CloseCallback) -> None:
        def closed(_conn: Any, reason: int, _opaque: Any) -> None:
            callback(_CLOSE_REASONS.get(reason, f"closed (libvirt reason {reason})"))

        self._call("watch the connection", lambda: self._conn.registerCloseCallback(closed, None))
        self._close_watched = True

    def block_device_present(self, path: str) -> bool:
        directory, _, name = path.rpartition("/")
        with self._folder(directory) as pool:
            return pool is not None and self.find_volume(pool, name) is not None

    def migration_tls(self) -> MigrationTls:
        conf = f"{qemuconf.CONF_DIR}/{qemuconf.CONF_FILE}"
        with self._folder(qemuconf.CONF_DIR) as pool:
            if pool is None or self.find_volume(pool, qemuconf.CONF_FILE) is None:
                text = ""  # no qemu.conf: libvirt's defaults
            else:
                # A stream of the file's bytes: libvirt hands them over, nothing parses them.
                text = b"".join(c if isinstance(c, bytes) else bytes(c)
                                for c in self.read_volume(conf)).decode("utf-8", "replace")
        cert_dir, verify = qemuconf.migration_tls(text)
        with self._folder(cert_dir) as pool:
            names = frozenset(self._volume_names(pool)) if pool is not None else frozenset()
        return MigrationTls(cert_dir, names, verify)

    def _volume_names(self, pool: str) -> list[str]:
        handle = self._pool(pool)
        self._call(f"refresh {pool}", lambda: handle.refresh(0))
        return [str(n) for n in self._call(f"list {pool}", handle.listVolumes)]

    @contextmanager
    def _folder(self, directory: str) -> Iterator[str | None]:
        """The name of a pool on ``directory``, or None: no such folder on the host.

        libvirt has no "list this folder" call; a file is visible to it as a volume
        of a pool on its folder: an existing pool if there is one, else a throw-away
        one. libvirt refuses a second pool on one folder, so while another probe
        (of this server or another) holds the folder, this one waits its turn rather
        than read the refusal as "no such folder".
        """
        conflict: libvirt.libvirtError | None = None
        for _ in range(_FOLDER_TRIES):
            existing = self._pool_on(directory)
            if existing is not None:
                yield existing
                return
            probe_name = f"{PROBE_POOL_PREFIX}{uuid.uuid4().hex[:12]}"
            xml = (f"<pool type='dir'><name>{probe_name}</name>"
                   f"<target><path>{escape(directory)}</path></target></pool>")
            try:
                probe = self._conn.storagePoolCreateXML(xml, 0)
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_SYSTEM_ERROR and \
                        "No such file or directory" in (err.get_error_message() or ""):
                    yield None
                    return
                if err.get_error_code() != libvirt.VIR_ERR_OPERATION_FAILED:
                    raise translate(err, f"host {self.name}: folder {directory}") from err
                conflict = err  # another probe's pool: gone in milliseconds
                time.sleep(_FOLDER_WAIT_S)
                continue
            try:
                yield probe_name
            finally:
                try:
                    probe.destroy()
                except libvirt.libvirtError:
                    pass  # a transient pool that is already gone
            return
        assert conflict is not None
        raise translate(conflict, f"host {self.name}: folder {directory} stayed held by "
                                  "another pool")

    def _pool_on(self, directory: str) -> str | None:
        """An active pool an admin made on ``directory`` (another probe's is not one)."""
        for pool in self._call("list pools", lambda: self._conn.listAllStoragePools(
                libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)):
            name = str(pool.name())
            if name.startswith(PROBE_POOL_PREFIX):
                continue
            if domxml.pool_path(self._call("pool definition", partial(pool.XMLDesc, 0))) \
                    == directory:
                return name
        return None

"""libvirt calls as ferry makes them: errors translated into :mod:`ferry.errors`.

The libvirt seam is this module, :mod:`ferry.virt.libvirt_host`,
:mod:`ferry.virt.libvirt_storage` and :mod:`ferry.virt.libvirt_cpu`: the only
modules of ferry that import libvirt. Every libvirt error is translated here,
so nothing above the seam needs to know libvirt's error codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import libvirt

from ferry.errors import HostUnreachable, MigrationCancelled, NotFound, VirtError

T = TypeVar("T")

# The throw-away pools ferry's probes put on a folder for a few calls: never a datastore.
PROBE_POOL_PREFIX = "ferry-probe-"

_UNREACHABLE_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
}


def _ignore_libvirt_stderr(_ctx: object, _err: object) -> None:
    # libvirt prints every error to stderr by default; ferry reports them itself.
    return None


libvirt.registerErrorHandler(_ignore_libvirt_stderr, None)


def translate(err: libvirt.libvirtError, what: str) -> Exception:
    code = err.get_error_code()
    message = f"{what}: {err.get_error_message() or err}"
    if code == libvirt.VIR_ERR_OPERATION_ABORTED:
        return MigrationCancelled(message)
    if code in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL,
                libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_NETWORK):
        return NotFound(message)
    if code in _UNREACHABLE_CODES or err.get_error_domain() == libvirt.VIR_FROM_RPC:
        return HostUnreachable(message)
    return VirtError(message, code)


@contextmanager
def libvirt_call(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as err:
        raise translate(err, what) from err


class LibvirtCalls:
    """What every part of a host's connection shares: its name, its libvirt connection,
    and calls whose errors name the host and what was asked."""

    name: str
    _conn: Any

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with libvirt_call(f"host {self.name}: {what}"):
            return fn()

    def _domain(self, name: str) -> Any:
        return self._call(f"VM {name}", lambda: self._conn.lookupByName(name))

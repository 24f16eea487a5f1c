"""Host connections that heal by themselves.

A host's libvirtd restarts (an upgrade, a crash, its supervisor) and links
drop. libvirt tells at once through the connection's close callback (end of
file on a restart, the keepalive giving up on a dead link); ferry then marks
the host disconnected with the reason, and a background thread per host opens
the connection again with growing pauses (:func:`backoff`) until the host
answers. Once it does, ``on_back`` runs (the control plane refreshes that
host's inventory fully), and whoever waits for the host (:meth:`wait`) wakes.
Nobody has to run ``ferry refresh``.

While a host is down, :meth:`HostConnections.get` fails at once with the
last error instead of blocking every caller on a connect that cannot work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ferry.errors import FerryError, HostError, HostUnreachable, NotFound
from ferry.virt.base import Connector, HostConnection

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 5.0
# How long a caller waits for the background thread's attempt under way: a check
# right after a libvirtd restart gets the host's own answer, not "not verified".
CALLER_WAIT_S = 5.0


def backoff(attempt: int, first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based): doubling, capped.

    The first retry comes quickly because a restarted libvirtd answers within
    a second or two; the cap keeps a host that is down for long from being
    forgotten for minutes once it is back.
    """
    if attempt < 1:
        return 0.0
    return float(min(most, first * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class HostLink:
    """How ferry's connection to one host stands."""

    connected: bool
    error: str | None = None  # why it is not connected (the last failure)
    since: float = 0.0  # unix time of the last change


class HostConnections:
    """One connection per host, reopened in the background when it is lost.

    ``uri_of`` gives a host's registered URI (so a changed registration is
    used on the next reconnect); ``on_open`` runs on every new connection
    before anyone else gets it (to subscribe to its events); ``on_lost`` and
    ``on_back`` are told when a host stops and starts answering.
    """

    def __init__(self, connector: Connector, uri_of: Callable[[str], str],
                 on_open: Callable[[str, HostConnection], None],
                 on_lost: Callable[[str, str], None],
                 on_back: Callable[[str], None],
                 delay: Callable[[int], float] = backoff) -> None:
        self._connector = connector
        self._uri_of = uri_of
        self._on_open = on_open
        self._on_lost = on_lost
        self._on_back = on_back
        self._delay = delay
        self._changed = threading.Condition()  # guards everything below
        self._conns: dict[str, HostConnection] = {}
        self._links: dict[str, HostLink] = {}
        self._healing: set[str] = set()
        self._opening: dict[str, threading.Lock] = {}
        self._closed = False

    # -- asking ----------------------------------------------------------
    def get(self, host: str) -> HostConnection:
        """The host's live connection, opened now if there is none; HostUnreachable if down.

        While the background thread waits between attempts, a caller still tries
        at once (a restarted libvirtd answers before the next attempt is due);
        while that thread is itself connecting, a caller waits for that attempt
        a little (:data:`CALLER_WAIT_S`: a restarted libvirtd takes milliseconds),
        not for as long as a connect to a dead link may hang.
        """
        with self._changed:
            if self._closed:
                raise HostUnreachable(f"ferry is shutting down: no new connection to {host}")
            conn = self._conns.get(host)
            healing = host in self._healing
            link = self._links.get(host)
            opening = self._opening.setdefault(host, threading.Lock())
        if conn is not None:
            if conn.alive():
                return conn
            # Dead before libvirt said so: open anew right here, as on first use.
            self._discard(host, conn)
        if not opening.acquire(timeout=CALLER_WAIT_S if healing else -1):
            reason = link.error if link is not None and link.error else "reconnecting"
            raise HostUnreachable(f"host {host} does not answer: {reason}")
        try:
            with self._changed:
                conn = self._conns.get(host)
            if conn is not None:
                return conn  # another caller opened it while this one waited
            try:
                # If this succeeds while healing, the background thread sees the
                # connection, stops, and tells on_back (in its thread, not the caller's).
                return self._open(host)
            except HostError as err:  # not a host that is unknown: nothing to heal there
                self._mark_down(host, err.message)
                raise
        finally:
            opening.release()

    def link(self, host: str) -> HostLink | None:
        with self._changed:
            return self._links.get(host)

    def open_connections(self) -> dict[str, HostConnection]:
        with self._changed:
            return dict(self._conns)

    def wait(self, host: str, timeout: float) -> bool:
        """Block until ``host`` is connected (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._closed:
                if host in self._conns:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return False

    # -- changes ---------------------------------------------------------
    def reset(self, host: str) -> None:
        """Drop the host's connection after a failure on it; the next get() opens anew."""
        with self._changed:
            conn = self._conns.pop(host, None)
            self._changed.notify_all()
        if conn is not None:
            conn.close()

    def forget(self, host: str) -> None:
        """The host is no longer registered: close its connection and stop healing it."""
        with self._changed:
            conn = self._conns.pop(host, None)
            self._links.pop(host, None)
            self._healing.discard(host)
            self._changed.notify_all()
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            conns, self._conns = self._conns, {}
            self._changed.notify_all()
        for conn in conns.values():
            conn.close()

    # -- inside ------------------------------------------------------------
    def _open(self, host: str) -> HostConnection:
        conn = self._connector(host, self._uri_of(host))
        try:
            # libvirt calls this from its event loop, which must not wait on ferry's
            # locks or on a close of the connection; a short thread does the work.
            conn.on_close(lambda reason: threading.Thread(
                target=self._lost, args=(host, conn, reason), daemon=True,
                name=f"lost-{host}").start())
            self._on_open(host, conn)
        except FerryError:
            conn.close()
            raise
        with self._changed:
            if self._closed:
                conn.close()
                raise HostUnreachable(f"ferry is shutting down: no new connection to {host}")
            self._conns[host] = conn
            self._links[host] = HostLink(True, None, time.time())
            self._changed.notify_all()
        return conn

    def _discard(self, host: str, conn: HostConnection) -> None:
        with self._changed:
            if self._conns.get(host) is conn:
                del self._conns[host]
                self._changed.notify_all()
        conn.close()

    def _lost(self, host: str, conn: HostConnection, reason: str) -> None:
        """libvirt closed ``conn`` (or it was found dead): mark the host down, start healing."""
        with self._changed:
            if self._conns.get(host) is not conn:
                return  # an old connection, or one ferry closed itself
            del self._conns[host]
            self._changed.notify_all()
        conn.close()
        self._mark_down(host, f"connection to host {host} lost: {reason}")

    def _mark_down(self, host: str, error: str) -> None:
        with self._changed:
            if self._closed:
                return
            self._links[host] = HostLink(False, error, time.time())
            start = host not in self._healing
            self._healing.add(host)
        self._on_lost(host, error)
        if start:
            threading.Thread(target=self._heal, args=(host,), daemon=True,
                             name=f"reconnect-{host}").start()

    def _heal(self, host: str) -> None:
        attempt = 0
        while True:
            attempt += 1
            with self._changed:
                # A pause that ends early when ferry shuts down, forgets the host, or a
                # caller's own attempt got through.
                self._changed.wait_for(
                    lambda: self._closed or host not in self._healing or host in self._conns,
                    self._delay(attempt))
                if self._closed or host not in self._healing:
                    return
                back = host in self._conns
                opening = self._opening.setdefault(host, threading.Lock())
            if not back:
                with opening:
                    try:
                        with self._changed:
                            back = host in self._conns
                        if not back:
                            self._open(host)
                    except NotFound:
                        with self._changed:  # no longer registered
                            self._healing.discard(host)
                        return
                    except FerryError as err:
                        with self._changed:
                            if host in self._healing:
                                self._links[host] = HostLink(False, err.message, time.time())
                        continue
                    except Exception:  # a bug must not end healing silently
                        log.exception("reconnecting to host %s failed", host)
                        continue
            with self._changed:
                self._healing.discard(host)
            log.info("host %s answers again after %d attempt(s)", host, attempt)
            try:
                self._on_back(host)
            except FerryError as err:
                log.warning("host %s answers again, but refreshing it failed: %s",
                            host, err.message)
            return

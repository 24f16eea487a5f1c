"""Heartbeat collector: measures what a lab VM's network saw during a migration.

Each lab guest sends ``FERRYHB1 name=<vm> seq=<n> mono_ns=<ns> disk_acked=<n>``
every 10 ms over UDP (see ``guest_agent.c``). The collector timestamps every
datagram on receipt with :func:`time.monotonic` (and wall time for reports),
so the largest gap between receipts is the downtime the VM's peers saw, and
the missing sequence numbers tell how many heartbeats were lost rather than
late. It also asks a guest to verify its disk writer's region (``FERRYVR1``)
and its memory writer's pages (``FERRYMC1``), and collects the answers.
"""

from __future__ import annotations

import bisect
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from ferry.errors import LabError
from ferry.lab import layout

# One heartbeat per 10 ms: 200k receipts is a bit over half an hour per VM.
HISTORY_PER_VM = 200_000
# The guest agent listens for ``verify``/``ping`` one port above the collector.
AGENT_PORT = layout.COLLECTOR_PORT + 1
_MAX_DATAGRAM = 2048
T = TypeVar("T")
_VERIFY_FIELDS = ("blocks", "written", "valid", "corrupt", "stale", "max_seq", "ok")
_MEMCHECK_FIELDS = ("pages", "valid", "stale", "torn", "misplaced", "pass", "ok")


@dataclass(frozen=True)
class HeartbeatGap:
    gap_ms: float
    seq_before: int
    seq_after: int
    # Heartbeats the guest sent that never arrived (0 if the guest was paused).
    lost: int


@dataclass(frozen=True)
class Heartbeat:
    seq: int
    guest_mono_ns: int
    disk_acked: int
    received_monotonic: float
    received_wall: float


@dataclass(frozen=True)
class VerifyResult:
    name: str
    blocks: int
    written: int
    valid: int
    corrupt: int
    stale: int
    max_seq: int
    ok: bool


@dataclass(frozen=True)
class MemoryCheck:
    """The guest's memory writer, checked page by page: each page holds its index and
    the pass that wrote it, with data derived from both. A page one pass behind is a
    write the migration lost (stale); data that does not match its header is torn; a
    page holding another page's index is misplaced."""

    name: str
    pages: int
    valid: int
    stale: int
    torn: int
    misplaced: int
    passes: int  # passes the writer had made over its memory when it checked
    ok: bool


class _VmState:
    def __init__(self) -> None:
        self.times: deque[float] = deque(maxlen=HISTORY_PER_VM)
        self.seqs: deque[int] = deque(maxlen=HISTORY_PER_VM)
        self.received = 0
        self.last: Heartbeat | None = None
        self.disk_acked = 0
        self.verify: list[tuple[float, VerifyResult]] = []
        self.memchecks: list[tuple[float, MemoryCheck]] = []
        self.pongs: list[float] = []


class HeartbeatCollector:
    """Receives heartbeats on ``address:port`` in a daemon thread; thread-safe."""

    def __init__(
        self, address: str = layout.COLLECTOR_ADDRESS, port: int = layout.COLLECTOR_PORT
    ) -> None:
        self.address = address
        self.port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._vms: dict[str, _VmState] = {}
        self._malformed = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise LabError("heartbeat collector already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # No SO_REUSEADDR: with it a second collector on this machine (a second
            # ferry server) binds the same port and silently takes part of the
            # heartbeats; without it the second one fails here and runs without.
            # 10 ms heartbeats from many VMs, and a burst when a paused VM
            # resumes: a big buffer keeps the kernel from dropping them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind((self.address, self.port))
        except OSError as exc:
            sock.close()
            raise LabError(
                f"heartbeat collector cannot bind {self.address}:{self.port}: {exc}"
            ) from exc
        # A timeout lets the reader notice stop() without closing a socket
        # another thread is blocked on.
        sock.settimeout(0.2)
        # Port 0 asks for any free port (tests); report the one we got.
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-collector-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> HeartbeatCollector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------

    @property
    def malformed(self) -> int:
        """How many datagrams were ignored because they did not parse."""
        with self._cond:
            return self._malformed

    def vms(self) -> list[str]:
        with self._cond:
            return sorted(self._vms)

    def received(self, vm: str) -> int:
        with self._cond:
            state = self._vms.get(vm)
            return state.received if state else 0

    def last_seq(self, vm: str) -> int | None:
        with self._cond:
            state = self._vms.get(vm)
            return state.last.seq if state and state.last else None

    def last_heartbeat(self, vm: str) -> Heartbeat | None:
        with self._cond:
            state = self._vms.get(vm)
            return state.last if state else None

    def disk_acked(self, vm: str) -> int:
        """Highest disk-writer sequence the guest has reported durable."""
        with self._cond:
            state = self._vms.get(vm)
            return state.disk_acked if state else 0

    def wait_for_heartbeat(self, vm: str, timeout: float, after: float | None = None) -> bool:
        """Wait until a heartbeat from ``vm`` has arrived (after monotonic time ``after``)."""
        deadline = time.monotonic() + timeout

        def arrived() -> bool:
            state = self._vms.get(vm)
            if state is None or state.last is None:
                return False
            return after is None or state.last.received_monotonic >= after

        with self._cond:
            while not arrived():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def first_heartbeat_after(self, vm: str, since: float) -> float | None:
        """When (monotonic) the first heartbeat from ``vm`` after ``since`` arrived, if one did."""
        with self._cond:
            state = self._vms.get(vm)
            times = list(state.times) if state else []
        i = bisect.bisect_right(times, since)
        return times[i] if i < len(times) else None

    def largest_gap(self, vm: str, since: float, until: float | None = None) -> HeartbeatGap | None:
        """The longest silence between two receipts within [since, until] (monotonic).

        The silence running into the window from the last receipt before
        ``since`` counts too, so a gap that began just before the window is not
        cut short. A silence still open at ``until`` has no closing heartbeat
        and is not reported. ``None`` if fewer than two receipts qualify.
        """
        with self._cond:
            state = self._vms.get(vm)
            if state is None:
                return None
            times = list(state.times)
            seqs = list(state.seqs)
        start = max(bisect.bisect_left(times, since) - 1, 0)
        end = len(times) if until is None else bisect.bisect_right(times, until)
        best: HeartbeatGap | None = None
        best_gap = -1.0
        for i in range(start + 1, end):
            gap = times[i] - times[i - 1]
            if gap > best_gap:
                best_gap = gap
                best = HeartbeatGap(
                    gap_ms=gap * 1000.0,
                    seq_before=seqs[i - 1],
                    seq_after=seqs[i],
                    # Reordering or an agent restart can make this negative.
                    lost=max(seqs[i] - seqs[i - 1] - 1, 0),
                )
        return best

    # -- requests to the guest ----------------------------------------------

    def ping(
        self, vm: str, guest_address: str, timeout: float = 5.0, agent_port: int = AGENT_PORT
    ) -> bool:
        """True if the guest agent of ``vm`` answers a ping within ``timeout``."""

        def pong(state: _VmState, sent_at: float) -> bool | None:
            return True if any(t >= sent_at for t in state.pongs) else None

        return self._request(vm, b"ping", guest_address, agent_port, timeout, 1.0, pong) or False

    def request_verify(
        self,
        vm: str,
        guest_address: str,
        timeout: float = 30.0,
        agent_port: int = AGENT_PORT,
        acked: int | None = None,
    ) -> VerifyResult:
        """Stop the guest's disk writer and have it check its region.

        The guest is told the highest sequence the collector saw acknowledged
        (or ``acked``, to test the checker); any block older than that on disk
        is a write the migration lost.
        """

        def answer(state: _VmState, sent_at: float) -> VerifyResult | None:
            return _first_since(state.verify, sent_at)

        if acked is None:
            acked = self.disk_acked(vm)
        command = f"verify {acked}".encode()
        # Verifying takes seconds under TCG, so resend rarely; twice is harmless.
        result = self._request(vm, command, guest_address, agent_port, timeout, 5.0, answer)
        if result is None:
            raise LabError(
                f"guest {vm} at {guest_address} did not answer verify within {timeout:g} s"
            )
        return result

    def request_memory_check(
        self,
        vm: str,
        guest_address: str,
        timeout: float = 60.0,
        agent_port: int = AGENT_PORT,
        spoil_page: int | None = None,
    ) -> MemoryCheck:
        """Have the guest's memory writer check every page it wrote (it pauses meanwhile).

        ``spoil_page`` first sets that page one pass behind, as a lost write would
        leave it: to show the check can fail."""

        def answer(state: _VmState, sent_at: float) -> MemoryCheck | None:
            return _first_since(state.memchecks, sent_at)

        command = b"memcheck" if spoil_page is None else f"memcheck spoil={spoil_page}".encode()
        # A check reads the whole writer's memory: seconds under TCG; resend rarely.
        result = self._request(vm, command, guest_address, agent_port, timeout, 10.0, answer)
        if result is None:
            raise LabError(f"guest {vm} at {guest_address} did not answer memcheck within "
                           f"{timeout:g} s (is its workload a memory writer, mem:MIB?)")
        return result

    def _request(
        self,
        vm: str,
        payload: bytes,
        address: str,
        port: int,
        timeout: float,
        resend_every: float,
        answered: Callable[[_VmState, float], T | None],
    ) -> T | None:
        """Send ``payload`` (again every ``resend_every`` s, as UDP may drop it) until
        ``answered`` finds the reply in the VM's state, or ``timeout`` passes."""
        sent_at = time.monotonic()
        deadline = sent_at + timeout
        resend_at = sent_at
        with self._cond:
            while True:
                state = self._vms.get(vm)
                if state is not None and (found := answered(state, sent_at)) is not None:
                    return found
                now = time.monotonic()
                if now >= deadline:
                    return None
                if now >= resend_at:
                    self._send(payload, address, port)
                    resend_at = now + resend_every
                self._cond.wait(min(deadline, resend_at) - now)

    def _send(self, payload: bytes, address: str, port: int) -> None:
        sock = self._sock
        if sock is None:
            raise LabError("heartbeat collector is not started")
        # From the collector's own socket, so the guest's reply comes back here.
        with contextlib.suppress(OSError):
            sock.sendto(payload, (address, port))

    # -- receiving ---------------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stopping.is_set():
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            received_monotonic = time.monotonic()
            received_wall = time.time()
            self._handle(data, received_monotonic, received_wall)

    def _handle(self, data: bytes, received_monotonic: float, received_wall: float) -> None:
        parsed = _parse(data)
        with self._cond:
            if parsed is None:
                self._malformed += 1
                return
            kind, fields = parsed
            state = self._vms.setdefault(fields["name"], _VmState())
            if kind == "FERRYHB1":
                seq, mono_ns, acked = _ints(fields, "seq", "mono_ns", "disk_acked")
                state.times.append(received_monotonic)
                state.seqs.append(seq)
                state.received += 1
                if state.last is not None and mono_ns + 10**9 < state.last.guest_mono_ns:
                    # The guest's clock went back: a new boot (or a new VM of the same
                    # name), whose disk writer starts over; reordering is not a second.
                    state.disk_acked = 0
                state.disk_acked = max(state.disk_acked, acked)
                state.last = Heartbeat(seq, mono_ns, acked, received_monotonic, received_wall)
            elif kind == "FERRYVR1":
                blocks, written, valid, corrupt, stale, max_seq, ok = _ints(fields, *_VERIFY_FIELDS)
                result = VerifyResult(
                    fields["name"], blocks, written, valid, corrupt, stale, max_seq, ok == 1
                )
                state.verify.append((received_monotonic, result))
                del state.verify[:-16]
            elif kind == "FERRYMC1":
                pages, valid, stale, torn, misplaced, passes, ok = _ints(fields, *_MEMCHECK_FIELDS)
                check = MemoryCheck(fields["name"], pages, valid, stale, torn, misplaced,
                                    passes, ok == 1)
                state.memchecks.append((received_monotonic, check))
                del state.memchecks[:-16]
            else:
                state.pongs.append(received_monotonic)
                del state.pongs[:-16]
            self._cond.notify_all()


def _first_since(answers: list[tuple[float, T]], sent_at: float) -> T | None:
    """The first answer received since a request was sent."""
    return next((answer for received_at, answer in answers if received_at >= sent_at), None)


def _ints(fields: dict[str, str], *names: str) -> tuple[int, ...]:
    return tuple(int(fields[name]) for name in names)


def _parse(data: bytes) -> tuple[str, dict[str, str]] | None:
    """``(kind, fields)`` of a well-formed datagram, else ``None``."""
    try:
        words = data.decode("ascii").split()
    except UnicodeDecodeError:
        return None
    if not words:
        return None
    kind, fields = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            return None
        fields[key] = value
    required: tuple[str, ...]
    if kind == "FERRYHB1":
        required = ("seq", "mono_ns", "disk_acked")
    elif kind == "FERRYVR1":
        required = _VERIFY_FIELDS
    elif kind == "FERRYMC1":
        required = _MEMCHECK_FIELDS
    elif kind == "FERRYPONG":
        required = ()
    else:
        return None
    name = fields.get("name", "")
    if not name or len(name) > 64:
        return None
    for key in required:
        value = fields.get(key, "")
        if not value.isdigit():
            return None
    if kind == "FERRYHB1" and int(fields["seq"]) < 1:
        return None
    return kind, fields

"""What crossed a lab host's migration link: a tcpdump capture inside the host's
network namespace, read back as the byte streams of its TCP connections."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from ferry.lab.layout import LabHostLayout

# The kernel's ring holds a whole move's capture (a few hundred MiB), so nothing is
# dropped even when the guests' emulation leaves tcpdump no CPU to drain it with.
BUFFER_KIB = 1024 * 1024


@dataclass
class Capture:
    pcap: Path
    streams: dict[tuple[bytes, int, bytes, int], bytes] = field(default_factory=dict)

    def read(self) -> None:
        """Each TCP connection's payload in capture order (a veth neither reorders nor
        loses segments), so a marker split across segments is found whole."""
        flows: dict[tuple[bytes, int, bytes, int], list[bytes]] = defaultdict(list)
        with self.pcap.open("rb") as handle:
            for _ts, frame in dpkt.pcap.Reader(handle):
                ip = dpkt.ethernet.Ethernet(frame).data
                if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                    continue
                tcp = ip.data
                if tcp.data:
                    flows[(ip.src, tcp.sport, ip.dst, tcp.dport)].append(bytes(tcp.data))
        self.streams = {flow: b"".join(parts) for flow, parts in flows.items()}

    @property
    def total_bytes(self) -> int:
        return sum(len(s) for s in self.streams.values())

    def holds(self, marker: bytes) -> bool:
        return any(marker in stream for stream in self.streams.values())


@contextlib.contextmanager
def captured(host_index: int, directory: Path) -> Iterator[Capture]:
    """Every TCP segment on host ``host_index``'s migration interface while the block runs."""
    host = LabHostLayout(host_index)
    capture = Capture(directory / f"{host.name}-{time.monotonic_ns()}.pcap")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, "tcpdump", "-i", host.mig_veth_host, "-n", "-s",
         "0", "-B", str(BUFFER_KIB), "-w", str(capture.pcap), "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on ...": the capture is armed
    assert "listening on" in line, f"tcpdump did not start: {line}{proc.stderr.read()}"
    try:
        yield capture
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert re.search(r"^0 packets dropped by kernel", err, re.M), f"tcpdump dropped: {err}"
    capture.read()

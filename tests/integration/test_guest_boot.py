"""The lab guest boots under plain QEMU (TCG) and its agent reaches the collector.

Needs root and QEMU, not libvirt. Everything runs in a private network
namespace (``fgt-<pid>``) holding a tap device with the collector's address,
so nothing in the root namespace, including a running lab, is touched.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferry.lab import layout
from ferry.lab.collector import HeartbeatCollector
from ferry.lab.guest import (
    FIRST_HEARTBEAT_MARKER,
    READY_MARKER,
    GuestWorkloads,
    ensure_guest_image,
    guest_cmdline,
    qemu_boot_command,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0
        or any(shutil.which(tool) is None for tool in ("qemu-system-x86_64", "qemu-img", "ip")),
        reason="needs root, qemu-system-x86_64, qemu-img and iproute2",
    ),
]

VM = "fgt-vm1"
TAP = "fgttap0"
CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _start_collector_in_netns(netns: str) -> HeartbeatCollector:
    """Bind the collector inside ``netns``; the socket stays there afterwards.

    setns() moves only the calling thread, so a throwaway thread switches and
    binds, and the test process itself never leaves the root namespace.
    """
    collector = HeartbeatCollector()
    failure: list[BaseException] = []

    def bind() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            collector.start()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=bind)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return collector


@dataclass
class BootedGuest:
    collector: HeartbeatCollector
    address: str
    started: float
    console: Path


@pytest.fixture
def booted_guest() -> Iterator[BootedGuest]:
    netns = f"fgt-{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="fgt-"))
    qemu: subprocess.Popen[bytes] | None = None
    collector: HeartbeatCollector | None = None
    ns_created = False
    try:
        image = ensure_guest_image(workdir / "image")
        disk = workdir / "disk.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"],
            check=True,
        )
        _ip("netns", "add", netns)
        ns_created = True
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "tuntap", "add", "dev", TAP, "mode", "tap")
        _ip(
            "-n", netns, "addr", "add",
            f"{layout.COLLECTOR_ADDRESS}/{layout.PRODUCTION_PREFIX}", "dev", TAP,
        )  # fmt: skip
        _ip("-n", netns, "link", "set", TAP, "up")
        collector = _start_collector_in_netns(netns)

        address = layout.guest_address(1)
        cmdline = guest_cmdline(
            VM, address, GuestWorkloads(heartbeat=True, memory_mib=64, disk_writer=True)
        )
        command = [
            "ip", "netns", "exec", netns,
            *qemu_boot_command(image, "tcg", cmdline, memory_mib=1024),
            "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:fe:00:01",
            "-drive", f"file={disk},if=virtio,format=qcow2,cache=none",
        ]  # fmt: skip
        console = workdir / "console.log"
        started = time.monotonic()
        with console.open("wb") as log:
            # `ip netns exec` execs qemu, so this pid is qemu's.
            qemu = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        yield BootedGuest(collector, address, started, console)
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait(timeout=30)
        if collector is not None:
            collector.stop()
        if ns_created:
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def test_guest_boots_and_heartbeats(booted_guest: BootedGuest) -> None:
    guest = booted_guest
    collector = guest.collector
    arrived = collector.wait_for_heartbeat(VM, timeout=15)
    first = time.monotonic() - guest.started
    assert arrived, f"no heartbeat within 15 s; console:\n{guest.console.read_text('replace')}"
    print(f"\nfirst heartbeat {first:.2f} s after qemu start")

    # Steady state with the memory and disk writers running.
    steady_from = time.monotonic() + 1.0
    time.sleep(6.0)
    gap = collector.largest_gap(VM, since=steady_from)
    assert gap is not None
    print(f"largest gap {gap}")
    assert gap.gap_ms < 1000, gap
    console = guest.console.read_text(errors="replace")
    for marker in (READY_MARKER, FIRST_HEARTBEAT_MARKER):
        line = re.search(rf"{marker}.*$", console, re.MULTILINE)
        assert line is not None, f"{marker} missing from the console:\n{console}"
        print(line.group(0))
    received = collector.received(VM)
    assert received >= 300, f"only {received} heartbeats"
    assert collector.disk_acked(VM) > 0

    assert collector.ping(VM, guest.address, timeout=10)
    result = collector.request_verify(VM, guest.address, timeout=60)
    print(result)
    assert result.ok, result
    assert result.written > 0
    assert result.corrupt == 0 and result.stale == 0
    assert result.max_seq >= collector.disk_acked(VM)

    # The checker must notice a lost write: claim one more write was acked.
    # The writer is stopped now, so that block holds an older seq (or nothing).
    lost = collector.request_verify(VM, guest.address, timeout=60, acked=result.max_seq + 1)
    print(lost)
    assert not lost.ok and lost.stale == 1 and lost.corrupt == 0, lost

"""The lab guest agent's memory self-check, run here as a process: the same C program the
lab's guests run, compiled as the lab compiles it, asked through the collector."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.lab import guest
from ferry.lab.collector import HeartbeatCollector

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (the lab's)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def agent_port(tmp_path: Path) -> Iterator[tuple[HeartbeatCollector, int]]:
    binary = tmp_path / "ferry-agent"
    source = Path(guest.__file__).with_name("guest_agent.c")
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(source)],
                   check=True, timeout=120)
    collector = HeartbeatCollector(address="127.0.0.1", port=0)
    collector.start()
    port = free_udp_port()
    agent = subprocess.Popen([str(binary), "--name", "mc1", "--collector",
                              f"127.0.0.1:{collector.port}", "--listen", f"127.0.0.1:{port}",
                              "--heartbeat", "0", "--memory", "8"],
                             stdout=subprocess.DEVNULL)
    try:
        yield collector, port
    finally:
        agent.kill()
        agent.wait(10)
        collector.stop()


def test_every_page_the_writer_wrote_checks_out(agent_port: tuple[HeartbeatCollector, int]
                                               ) -> None:
    collector, port = agent_port
    first = collector.request_memory_check("mc1", "127.0.0.1", timeout=20, agent_port=port)
    second = collector.request_memory_check("mc1", "127.0.0.1", timeout=20, agent_port=port)
    assert first.ok and first.pages == 8 * 2**20 // 4096 == first.valid
    assert (first.stale, first.torn, first.misplaced) == (0, 0, 0)
    # The writer kept rewriting between the two checks: the check follows its passes.
    assert second.ok and second.passes >= first.passes


def test_a_page_left_one_pass_behind_is_found(agent_port: tuple[HeartbeatCollector, int]
                                             ) -> None:
    collector, port = agent_port
    spoiled = collector.request_memory_check("mc1", "127.0.0.1", timeout=20, agent_port=port,
                                             spoil_page=100)
    assert not spoiled.ok and spoiled.stale == 1 and spoiled.valid == spoiled.pages - 1

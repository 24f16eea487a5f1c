"""Host connections heal by themselves: told by the close callback, reopened with backoff,
and the control plane's inventory keeps a silent host's VMs, marked not current."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_plane import plane_over

from ferry.engine.connections import HostConnections, backoff
from ferry.engine.controlplane import ControlPlane
from ferry.errors import HostUnreachable
from ferry.model import VM, VMState
from ferry.virt.base import HostConnection
from ferry.virt.fake import Backing, FakeHost, FakeWorld

VM1 = VM(name="web1", uuid="u1", host="", state=VMState.RUNNING, memory_kib=2**20, vcpus=1)


def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_backoff_doubles_from_half_a_second_up_to_its_cap() -> None:
    assert [backoff(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
    assert backoff(0) == 0
    assert backoff(3, first=1, most=3) == 3


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld()
    host = FakeHost(world, "host1", "uuid-1")
    host.add_pool("shared", "/srv/shared", Backing())
    host.add_vm(VM1)
    return world


def test_a_lost_connection_is_reopened_in_the_background(world: FakeWorld) -> None:
    events: list[tuple[str, str]] = []
    opened: list[str] = []

    def on_open(host: str, _conn: HostConnection) -> None:
        opened.append(host)

    hosts = HostConnections(world.connect, lambda name: f"qemu+tls://{name}/system", on_open,
                            on_lost=lambda h, e: events.append(("lost", e)),
                            on_back=lambda h: events.append(("back", h)),
                            delay=lambda attempt: 0.02)
    fake = world.host("host1")
    assert hosts.get("host1") is fake and opened == ["host1"]
    fake.go_down("the host's libvirtd closed it (stopped or restarted)")
    until(lambda: events)
    assert events[0] == ("lost", "connection to host host1 lost: the host's libvirtd closed "
                                 "it (stopped or restarted)")
    link = hosts.link("host1")
    assert link is not None and not link.connected
    with pytest.raises(HostUnreachable, match="host host1 does not answer"):
        hosts.get("host1")  # at once: the background thread is already trying
    assert not hosts.wait("host1", 0.05)
    fake.come_up()
    assert hosts.wait("host1", 5)
    until(lambda: ("back", "host1") in events)
    assert hosts.get("host1") is fake and opened == ["host1", "host1"]
    hosts.close()


def test_a_caller_does_not_wait_for_the_next_attempt_once_the_host_is_back(
        world: FakeWorld) -> None:
    back: list[str] = []
    hosts = HostConnections(world.connect, lambda name: f"qemu+tls://{name}/system",
                            lambda h, c: None, lambda h, e: None, back.append,
                            delay=lambda attempt: 60.0)  # the thread's next try: far off
    fake = world.host("host1")
    hosts.get("host1")
    fake.go_down()
    until(lambda: hosts.link("host1") is not None and not hosts.link("host1").connected)
    with pytest.raises(HostUnreachable):
        hosts.get("host1")
    fake.come_up()  # a restarted libvirtd answers
    assert hosts.get("host1") is fake  # at once, by this caller
    until(lambda: back == ["host1"])  # and the background thread still reports it back
    hosts.close()


def test_a_caller_waits_a_little_for_the_attempt_under_way(world: FakeWorld) -> None:
    fake = world.host("host1")
    gate = threading.Event()
    attempts: list[str] = []

    def connect(name: str, uri: str) -> HostConnection:
        attempts.append(name)
        if len(attempts) > 1:
            gate.wait(5)  # the background thread's attempt takes a while
        return world.connect(name, uri)

    hosts = HostConnections(connect, lambda name: f"qemu+tls://{name}/system",
                            lambda h, c: None, lambda h, e: None, lambda h: None,
                            delay=lambda attempt: 0.01)
    hosts.get("host1")
    fake.go_down()
    until(lambda: len(attempts) == 2)  # the thread is connecting now
    fake.come_up()
    threading.Timer(0.2, gate.set).start()
    assert hosts.get("host1") is fake  # the thread's answer, not "does not answer"
    hosts.close()


def test_an_unknown_host_is_not_healed(world: FakeWorld) -> None:
    from ferry.errors import NotFound

    def uri_of(name: str) -> str:
        raise NotFound(f"no host named {name}")

    lost: list[str] = []
    hosts = HostConnections(world.connect, uri_of, lambda h, c: None,
                            lambda h, e: lost.append(h), lambda h: None)
    with pytest.raises(NotFound):
        hosts.get("ghost")
    assert lost == [] and hosts.link("ghost") is None
    hosts.close()


def test_a_host_down_at_first_contact_is_healed_too(world: FakeWorld) -> None:
    fake = world.host("host1")
    fake.up = False
    back: list[str] = []
    hosts = HostConnections(world.connect, lambda name: f"qemu+tls://{name}/system",
                            lambda h, c: None, lambda h, e: None, back.append,
                            delay=lambda attempt: 0.02)
    with pytest.raises(HostUnreachable):
        hosts.get("host1")
    fake.come_up()
    until(lambda: back == ["host1"])
    hosts.forget("host1")
    assert hosts.link("host1") is None
    hosts.close()


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path, ("host1",)) as plane:
        yield plane


def test_a_silent_host_keeps_its_vms_marked_not_current_until_it_answers(
        plane: ControlPlane, world: FakeWorld) -> None:
    fake = world.host("host1")
    fake.go_down()
    until(lambda: not plane.list_hosts()[0].connected)
    host = plane.list_hosts()[0]
    assert host.error is not None and "lost" in host.error
    assert [(vm.name, vm.current) for vm in plane.list_vms()] == [("web1", False)]
    plane.refresh()  # a refresh while it is silent keeps them too
    assert [(vm.name, vm.current) for vm in plane.list_vms()] == [("web1", False)]
    fake.come_up()  # no refresh asked for: ferry reconnects and rereads the host
    until(lambda: plane.list_hosts()[0].connected and plane.list_vms()[0].current, 15)
    assert plane.get_vm("web1").host == "host1"

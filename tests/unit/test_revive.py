"""The check after a rollback: a guest left on its source must really run (issue 10, item 7)."""

from __future__ import annotations

import time

import pytest

from ferry.engine.revive import GuestCheck, Heard, needs_kick
from ferry.model import VM, VMState
from ferry.reports import GuestCheckReport
from ferry.virt.fake import FakeHost, FakeWorld


def test_needs_kick() -> None:
    assert not needs_kick(Heard.ALIVE, "qemu")
    assert needs_kick(Heard.SILENT, "qemu") and needs_kick(Heard.SILENT, "kvm")
    # Unheard: only TCG loses the interrupt, and the stall cannot be seen from outside.
    assert needs_kick(Heard.UNHEARD, "qemu") and not needs_kick(Heard.UNHEARD, "kvm")


class Beats:
    """A heartbeat source: ``alive`` says whether heartbeats come after a moment."""

    def __init__(self, heard_before: bool, alive: bool, alive_after_kick: bool = True,
                 host: FakeHost | None = None) -> None:
        self.heard_before = heard_before
        self.alive = alive
        self.alive_after_kick = alive_after_kick
        self.host = host

    def received(self, vm: str) -> int:
        return 100 if self.heard_before else 0

    def wait_for_heartbeat(self, vm: str, timeout: float, after: float | None = None) -> bool:
        if self.host is not None and self.host.kicks:
            return self.alive_after_kick
        if not self.alive:
            time.sleep(timeout)
        return self.alive


@pytest.fixture
def host() -> FakeHost:
    host = FakeHost(FakeWorld(), "host1", "u1")
    host.add_vm(VM(name="web1", uuid="u", host="", state=VMState.RUNNING, memory_kib=1024,
                   vcpus=1, domain_type="qemu"))
    return host


def test_a_guest_heard_after_the_rollback_is_left_alone(host: FakeHost) -> None:
    found = GuestCheck(host, "web1", Beats(heard_before=True, alive=True)).run(time.monotonic())
    assert found is not None
    message, facts = found
    assert facts == GuestCheckReport(heard="alive", domain_type="qemu", kicked=False)
    assert "heartbeat was heard" in message and host.kicks == []


def test_a_silent_guest_is_paused_and_resumed_and_that_is_recorded(host: FakeHost) -> None:
    beats = Beats(heard_before=True, alive=False, host=host)
    found = GuestCheck(host, "web1", beats, grace_seconds=0.05).run(time.monotonic())
    assert found is not None
    message, facts = found
    assert host.kicks == ["web1"] and host.vms["web1"].state is VMState.RUNNING
    assert facts.heard == "silent" and facts.kicked and facts.heartbeat_back
    assert (facts.silent_ms or 0) >= 40
    assert "sent no heartbeat" in message and "its heartbeat came back" in message


def test_a_guest_still_silent_after_the_repair_says_so(host: FakeHost) -> None:
    beats = Beats(heard_before=True, alive=False, alive_after_kick=False, host=host)
    found = GuestCheck(host, "web1", beats, grace_seconds=0.01, confirm_seconds=0.01).run(
        time.monotonic())
    assert found is not None
    assert found[1].heartbeat_back is False and "still no heartbeat" in found[0]


def test_an_unheard_tcg_guest_is_repaired_unasked_a_kvm_guest_is_not(host: FakeHost) -> None:
    found = GuestCheck(host, "web1", None).run(time.monotonic())
    assert found is not None and found[1].heard == "unheard" and found[1].kicked
    assert "cannot hear" in found[0] and host.kicks == ["web1"]
    host.kicks.clear()
    host.vms["web1"] = VM(**{**host.vms["web1"].__dict__, "domain_type": "kvm"})
    assert GuestCheck(host, "web1", None).run(time.monotonic()) is None
    assert host.kicks == []


def test_a_paused_or_absent_vm_is_not_touched(host: FakeHost) -> None:
    host.vms["web1"] = VM(**{**host.vms["web1"].__dict__, "state": VMState.PAUSED})
    assert GuestCheck(host, "web1", None).run(time.monotonic()) is None
    assert GuestCheck(host, "ghost", None).run(time.monotonic()) is None
    assert host.kicks == [] and host.vms["web1"].state is VMState.PAUSED

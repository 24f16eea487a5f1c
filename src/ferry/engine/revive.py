"""After a live migration is rolled back: prove that the guest left on its source runs.

Why this exists: QEMU 7.2 under TCG can lose a guest's timer interrupt that
arrives while it tears down a cancelled migration (``migrate_fd_cleanup``).
Seen in the lab: the PIT raises IRQ0, the 8259 holds it (``irr=01 isr=00``),
the local APIC passes it on as ExtINT, and the vCPU never acknowledges it. A
busy guest then runs on with no timer at all: libvirt and QEMU say
"running", the guest's clock advances, but nothing in the guest that sleeps
ever wakes, until something else makes the vCPU look at its pending
interrupts again (another interrupt, an NMI, or the VM paused and resumed).
Pausing and resuming is the repair that tells the guest nothing: it only
loses a few milliseconds.

ferry cannot fix QEMU, so after every rollback that leaves the VM running on
its source it checks. Where it hears the guest (the lab's heartbeat) it waits
for the next heartbeat and repairs only a silent guest. Where it cannot hear
it, it repairs an emulated (TCG) guest unasked: the stall cannot be seen from
outside, and the repair costs milliseconds. A KVM guest's interrupts do not
pass through TCG and are left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from ferry.errors import FerryError
from ferry.model import VMState
from ferry.reports import GuestCheckReport
from ferry.virt.base import HostConnection


class HeartbeatListener(Protocol):
    """What the check needs of the lab's heartbeat collector (times are time.monotonic())."""

    def received(self, vm: str) -> int: ...

    def wait_for_heartbeat(self, vm: str, timeout: float, after: float | None = None) -> bool: ...


class Heard(StrEnum):
    ALIVE = "alive"  # a heartbeat came after the rollback
    SILENT = "silent"  # the guest sent heartbeats before, and none since
    UNHEARD = "unheard"  # ferry cannot hear this guest


def needs_kick(heard: Heard, domain_type: str) -> bool:
    """Pure: whether to pause and resume the VM after a rollback."""
    if heard is Heard.ALIVE:
        return False
    if heard is Heard.SILENT:
        return True
    return domain_type == "qemu"  # TCG: the only accelerator that loses the interrupt


@dataclass
class GuestCheck:
    """Checks (and if need be repairs) the guest a rollback left running on ``host``."""

    host: HostConnection
    vm: str
    heartbeat: HeartbeatListener | None = None
    # A guest under TCG on a loaded host can be late by tens of milliseconds;
    # waiting a second keeps a slow guest from being taken for a stalled one.
    grace_seconds: float = 1.0
    confirm_seconds: float = 2.0

    def run(self, since: float) -> tuple[str, GuestCheckReport] | None:
        """Check the guest, repair it if needed; ``since`` is when the migration ended.

        Returns what to record (a sentence and the facts), or None when the VM
        is not running on the host (nothing to check).
        """
        try:
            vm = self.host.get_vm(self.vm)
        except FerryError:
            vm = None
        if vm is None or vm.state is not VMState.RUNNING:
            return None
        heard = self._listen(since, self.grace_seconds)
        record = GuestCheckReport(heard=heard.value, domain_type=vm.domain_type)
        if heard is Heard.ALIVE:
            return (f"{self.vm} runs on {self.host.name}: its heartbeat was heard within "
                    f"{self._since_ms(since)} ms of the migration's end", record)
        if not needs_kick(heard, vm.domain_type):
            return None
        silent_ms = self._since_ms(since)
        kicked_at = time.monotonic()
        try:
            self.host.suspend_vm(self.vm)
            self.host.resume_vm(self.vm)
        except FerryError as err:
            return (f"could not pause and resume {self.vm} on {self.host.name} to deliver "
                    f"its lost timer interrupt: {err.message}",
                    replace(record, kick_error=err.message))
        record = replace(record, kicked=True)
        if heard is Heard.UNHEARD:
            return (f"paused and resumed {self.vm} on {self.host.name}: QEMU under TCG can "
                    "lose a timer interrupt while it tears down a cancelled migration, and "
                    "ferry cannot hear this guest to see whether it did", record)
        back = self._listen(kicked_at, self.confirm_seconds)
        record = replace(record, silent_ms=silent_ms, heartbeat_back=back is Heard.ALIVE)
        outcome = ("its heartbeat came back" if back is Heard.ALIVE
                   else f"still no heartbeat {self.confirm_seconds:g} s later")
        return (f"{self.vm} on {self.host.name} sent no heartbeat for {silent_ms} ms after "
                "the migration ended (QEMU under TCG lost its timer interrupt while tearing "
                f"down the migration); paused and resumed it to deliver the interrupt: "
                f"{outcome}", record)

    def _listen(self, since: float, seconds: float) -> Heard:
        if self.heartbeat is None or self.heartbeat.received(self.vm) == 0:
            return Heard.UNHEARD
        left = since + seconds - time.monotonic()
        if self.heartbeat.wait_for_heartbeat(self.vm, max(left, 0.0), after=since):
            return Heard.ALIVE
        return Heard.SILENT

    @staticmethod
    def _since_ms(since: float) -> int:
        return round((time.monotonic() - since) * 1000)

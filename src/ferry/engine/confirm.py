"""What a move left behind: asked of both hosts, stated as seen, confirmed later if need be.

After a move fails or is cancelled ferry asks the source and the destination
where the VM is. A host that does not answer is not counted as "absent": the
rollback says it did not answer and that what it holds is not confirmed. The
move's record is then kept open for a confirmation (:class:`Confirmer`): once
that host answers again (bounded in time), ferry asks both hosts once more,
applies the rollback's rule then (a copy on the destination while the VM runs
on the source is an incoming copy left over: it is removed), and adds what it
found to the job's events and report.

The decisions (:func:`rollback_rule`, :func:`describe`) are pure functions
over :class:`Sighting`; :func:`sight` and :class:`Confirmer` are the IO edge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ferry.engine.jobs import JobHandle
from ferry.errors import FerryError
from ferry.job import Phase
from ferry.model import VMState
from ferry.reports import Confirmation, HostSighting
from ferry.virt.base import HostConnection

log = logging.getLogger(__name__)

# How long ferry keeps trying to confirm what a host that did not answer holds.
CONFIRM_WITHIN_S = 600.0


@dataclass(frozen=True)
class Sighting:
    """What one host said about a VM, or that it did not answer."""

    host: str
    answered: bool
    state: VMState | None = None  # None: no domain of that name there
    error: str | None = None  # why the host did not answer

    @property
    def present(self) -> bool:
        return self.answered and self.state is not None

    @property
    def running(self) -> bool:
        return self.state in (VMState.RUNNING, VMState.PAUSED)


def rollback_rule(source: Sighting, dest: Sighting) -> bool:
    """Whether to remove the destination's copy: only when both hosts answered, the VM
    runs on the source, and the destination holds a copy (the incoming side, left over)."""
    return source.answered and dest.answered and source.running and dest.present


def unanswered(*sightings: Sighting) -> tuple[str, ...]:
    return tuple(s.host for s in sightings if not s.answered)


def describe_source(vm: str, seen: Sighting) -> str:
    if not seen.answered:
        return (f"{seen.host} did not answer: whether {vm} runs there is not confirmed"
                + (f" ({seen.error})" if seen.error else ""))
    if seen.state is None:
        return f"{vm} is NOT on {seen.host}"
    if seen.running:
        return f"{vm} is {'running' if seen.state is VMState.RUNNING else 'paused'} on {seen.host}"
    return f"{vm} is NOT running on {seen.host} (it is {seen.state.value} there)"


def describe_dest(vm: str, seen: Sighting) -> str:
    if not seen.answered:
        return (f"{seen.host} did not answer: whether a copy of {vm} remains there is not "
                "confirmed" + (f" ({seen.error})" if seen.error else ""))
    if seen.state is None:
        return f"nothing remains on {seen.host}"
    return f"a copy remains on {seen.host} ({seen.state.value})"


def describe(vm: str, source: Sighting, dest: Sighting) -> str:
    if source.answered and source.state is None and dest.running:
        # Not a leftover: the source's libvirtd finished the move without ferry watching.
        return f"{vm} is NOT on {source.host}; it runs on {dest.host}"
    return f"{describe_source(vm, source)}; {describe_dest(vm, dest)}"


def seen_report(seen: Sighting) -> HostSighting:
    """A sighting as a job's report keeps it."""
    return HostSighting(host=seen.host, answered=seen.answered,
                        state=seen.state.value if seen.state is not None else None,
                        error=seen.error)


def seen_dict(seen: Sighting) -> dict[str, object]:
    """A sighting as a job's event keeps it."""
    return asdict(seen_report(seen))


# -- the IO edge ------------------------------------------------------------
Reach = Callable[[str], HostConnection]
"""The current connection to a host by name (reopened if it was lost)."""

WaitFor = Callable[[str, float], bool]
"""Block until the named host answers (True) or the seconds pass (False)."""


def sight(reach: Reach, host: str, vm: str) -> Sighting:
    try:
        found = reach(host).get_vm(vm)
    except FerryError as err:
        return Sighting(host, False, error=err.message)
    return Sighting(host, True, found.state if found is not None else None)


def remove_leftover(reach: Reach, host: str, vm: str) -> str | None:
    """Power off and undefine the destination's copy; None, or why it could not be done."""
    try:
        conn = reach(host)
        leftover = conn.get_vm(vm)
        if leftover is not None and leftover.state is not VMState.SHUTOFF:
            conn.destroy_vm(vm)
        if leftover is not None and leftover.persistent:
            conn.undefine_vm(vm)
    except FerryError as err:
        return err.message
    return None


def settle(reach: Reach, vm: str, source: str, dest: str
           ) -> tuple[Sighting, Sighting, list[str]]:
    """Ask both hosts, apply the rollback rule, ask the destination again.

    Returns the sightings after the rule and what was done ("removed ...",
    "could not remove ...").
    """
    src, dst = sight(reach, source, vm), sight(reach, dest, vm)
    done: list[str] = []
    if rollback_rule(src, dst):
        assert dst.state is not None
        error = remove_leftover(reach, dest, vm)
        if error is None:
            done.append(f"removed the leftover copy ({dst.state.value}) from {dest}")
        else:
            done.append(f"could not remove the copy from {dest}: {error}")
        dst = sight(reach, dest, vm)
    return src, dst, done


@dataclass
class Confirmer:
    """Confirms, once the hosts answer, what a finished move left where.

    Runs one background thread per job whose rollback (or end) could not
    see every host; gives up after ``within`` seconds, saying so on the job.
    """

    reach: Reach
    wait_for: WaitFor
    within: float = CONFIRM_WITHIN_S
    retry_s: float = 2.0

    def later(self, job: JobHandle, vm: str, source: str, dest: str, apply_rule: bool,
              on_source: Callable[[], None] | None = None) -> threading.Thread:
        """Confirm in the background; ``on_source`` runs once the VM is confirmed running
        on its source (the rollback could not see it there to check its guest)."""
        thread = threading.Thread(target=self._confirm,
                                  args=(job, vm, source, dest, apply_rule, on_source),
                                  daemon=True, name=f"confirm-{job.id[:8]}")
        thread.start()
        return thread

    def _confirm(self, job: JobHandle, vm: str, source: str, dest: str,
                 apply_rule: bool, on_source: Callable[[], None] | None) -> None:
        deadline = time.monotonic() + self.within
        while True:
            for host in (source, dest):
                if not self.wait_for(host, max(0.0, deadline - time.monotonic())):
                    if time.monotonic() < deadline:
                        return  # ferry is shutting down: nothing can be asked or recorded
                    self._give_up(job, vm, source, dest)
                    return
            if apply_rule:
                src, dst, done = settle(self.reach, vm, source, dest)
            else:
                src, dst, done = sight(self.reach, source, vm), sight(self.reach, dest, vm), []
            if not unanswered(src, dst):
                self._record(job, vm, src, dst, done)
                if on_source is not None and src.running:
                    on_source()
                return
            if time.monotonic() >= deadline:
                self._give_up(job, vm, source, dest)
                return
            # Answered a moment ago and not now (still flapping): try again shortly.
            time.sleep(min(self.retry_s, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _record(job: JobHandle, vm: str, src: Sighting, dst: Sighting,
                done: list[str]) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now))
        message = f"confirmed at {stamp}: {describe(vm, src, dst)}"
        if done:
            message += f" ({'; '.join(done)})"
        job.event(Phase.ROLLBACK, message, confirmed_at=now, source=seen_dict(src),
                  dest=seen_dict(dst), done=done)
        job.amend_report(confirmed=Confirmation(at=now, detail=message,
                                                source=seen_report(src),
                                                dest=seen_report(dst), done=tuple(done)))

    def _give_up(self, job: JobHandle, vm: str, source: str, dest: str) -> None:
        message = (f"not confirmed within {self.within:.0f} s: {source} or {dest} did not "
                   f"answer again; check with 'ferry vm show {vm}'")
        job.event(Phase.ROLLBACK, message)
        job.amend_report(confirmed=Confirmation(at=None, detail=message))
        log.warning("job %s: %s", job.id, message)

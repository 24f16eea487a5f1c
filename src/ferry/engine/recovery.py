"""Post-copy recovery: a move whose link failed during post-copy, resumed once it returns.

In post-copy the VM runs on the destination while the pages it has not yet
received are still only on the source: neither host holds the whole VM. When
the migration link fails then, QEMU pauses the VM on both sides (libvirt marks
them "post-copy failed") instead of losing it, and the same migration asked
again with ``VIR_MIGRATE_POSTCOPY_RESUME`` reconnects the two QEMUs. Seen in
the lab with libvirt 9.0 and QEMU 7.2, a link cut silently (no reset):

- libvirt notices first, when its keepalives to the destination go unanswered
  (about 30 s): the source is "paused (post-copy failed)" and the migration
  call returns an error; the source's QEMU still believes its stream is alive
  ("postcopy-active") until the link returns, so ferry pauses it
  (:meth:`~ferry.virt.seam.migration.Migration.pause_postcopy`) before resuming;
- a resume refused while the link is down (or before the destination noticed)
  is simply asked again, until the configured time runs out.

Never, in any of this, is either side's copy destroyed or the source resumed:
both hold part of the VM's memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ferry.engine.jobs import JobHandle
from ferry.errors import FerryError, MigrationError
from ferry.job import Phase
from ferry.model import PostcopyState
from ferry.virt.base import HostConnection, MigrationOptions

# Between two resumes; each one also waits for libvirt to reach the destination.
RETRY_EVERY_S = 3.0


@dataclass(frozen=True)
class Stranded:
    """What a post-copy that could not be resumed left where (for the admin)."""

    vm: str
    source: str
    dest: str
    dest_uri: str
    left_bytes: int | None  # memory still only on the source, by the last sample
    wait_s: float  # the wait allowed
    waited_s: float  # until the last attempt gave up
    last_error: str
    risk: str | None = None  # why a resume may not be possible at all (post-copy at risk)

    def explain(self) -> str:
        left = (f"about {self.left_bytes / 2**20:.0f} MiB of its memory"
                if self.left_bytes else "the pages it had not yet received")
        resume = (f"virsh migrate --live --p2p --persistent --undefinesource --postcopy "
                  f"--postcopy-resume --tls {self.vm} {self.dest_uri}")
        text = (f"post-copy of {self.vm} from {self.source} to {self.dest} could not be "
                f"resumed in the {self.wait_s:.0f} s allowed (the last attempt ended "
                f"{self.waited_s:.0f} s after the link failed: {self.last_error}). "
                f"{self.vm} is paused on both hosts: it runs from {self.dest}'s memory, "
                f"but {left} is still only on {self.source}, so neither copy can run alone "
                f"and neither may be destroyed. Restore the migration link between "
                f"{self.source} and {self.dest}, then resume the move from {self.source}: "
                f"{resume}")
        return text + (f". Post-copy was used at a risk: {self.risk}" if self.risk else "")


@dataclass
class PostcopyRecovery:
    """Resumes one interrupted post-copy from the source, within ``wait_s``."""

    vm: str
    source: HostConnection
    dest_name: str
    options: MigrationOptions
    wait_s: float
    risk: str | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def run(self, job: JobHandle, cause: str, left_bytes: int | None) -> None:
        """Resume the move; MigrationError explaining where the VM is when it cannot."""
        started = self.clock()
        job.event(Phase(job.job.phase), f"post-copy interrupted ({cause}): {self.vm} is paused "
                  f"on {self.source.name} and {self.dest_name}; resuming when the link "
                  f"returns (waiting up to {self.wait_s:.0f} s)")
        resume = replace(self.options, postcopy_resume=True)
        attempt, last = 0, cause
        while True:
            attempt += 1
            try:
                self._pause_source_stream(job)
                self.source.migrate(self.vm, resume)
            except FerryError as err:
                last = err.message
            else:
                job.event(Phase(job.job.phase), f"post-copy resumed (attempt {attempt}, "
                          f"{self.clock() - started:.0f} s after the link failed)")
                return
            if self.clock() - started >= self.wait_s:
                raise MigrationError(Stranded(
                    self.vm, self.source.name, self.dest_name, self.options.dest_uri,
                    left_bytes, self.wait_s, self.clock() - started, last, self.risk).explain())
            if attempt == 1 or attempt % 10 == 0:
                job.event(Phase(job.job.phase), f"post-copy not resumed yet (attempt {attempt}): "
                          f"{last}")
            self.sleep(RETRY_EVERY_S)

    def _pause_source_stream(self, job: JobHandle) -> None:
        """Make the source's QEMU drop its stream, which it may still believe alive.

        libvirt cannot tell whether QEMU has already paused the post-copy (QEMU then
        refuses a second pause), so a refusal here is no error: the resume that
        follows says whether the two sides could be reconnected."""
        if self.source.postcopy_state(self.vm) is PostcopyState.NONE:
            return
        try:
            self.source.pause_postcopy(self.vm)
        except FerryError:
            return
        job.event(Phase(job.job.phase), f"post-copy stream of {self.vm} on "
                  f"{self.source.name} paused, ready to resume")

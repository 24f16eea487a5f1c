"""A job's life as data: its states, the moves allowed between them, and when a
cancel comes too late. Pure: the store enforces :data:`TRANSITIONS` in SQL too.

::

    queued --> running --> succeeded
      |          |   \\--> failed
      |          |    \\-> cancelled
      |          v
      |       cancelling --> succeeded   (too late: the VM already ran on the destination)
      |                 \\--> failed      (a real failure stays one)
      |                  \\-> cancelled
      +--> cancelled                     (withdrawn before it started)
      +--> failed                        (could not start: its server or its VM is gone)
"""

from __future__ import annotations

from ferry.errors import FerryError
from ferry.job import JobKind, JobState, Phase

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.CANCELLING, JobState.SUCCEEDED, JobState.FAILED,
                                 JobState.CANCELLED}),
    JobState.CANCELLING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class IllegalTransition(FerryError):
    """A job was asked to move between states its life does not allow (a bug in ferry)."""


def predecessors(state: JobState) -> tuple[JobState, ...]:
    """The states a job may be in to move to ``state``."""
    return tuple(s for s, nexts in TRANSITIONS.items() if state in nexts)


def check_transition(job_id: str, current: JobState, new: JobState) -> None:
    if new is not current and new not in TRANSITIONS[current]:
        raise IllegalTransition(f"job {job_id} cannot go from {current.value} to {new.value}")


# Once a move reaches these phases the VM already runs on its destination (or on its
# new files, or is defined there): aborting could only lose it, so it completes.
_NO_RETURN: dict[JobKind, frozenset[Phase]] = {
    JobKind.MIGRATE: frozenset({Phase.SWITCHOVER, Phase.RESUMED, Phase.UNREGISTER, Phase.DONE}),
    JobKind.MIGRATE_WITH_STORAGE: frozenset({Phase.SWITCHOVER, Phase.RESUMED,
                                             Phase.UNREGISTER, Phase.DONE}),
    JobKind.STORAGE_MIGRATE: frozenset({Phase.SWITCHOVER, Phase.RESUMED, Phase.UNREGISTER,
                                        Phase.DONE}),
    JobKind.COLD_MIGRATE: frozenset({Phase.REGISTER, Phase.UNREGISTER, Phase.DONE}),
    JobKind.EVACUATE: frozenset(),
}


def past_no_return(kind: JobKind, phase: Phase) -> bool:
    return phase in _NO_RETURN[kind]


def too_late_message(kind: JobKind, vm: str, where: str) -> str:
    """What a cancel past the point of no return answers."""
    if kind is JobKind.COLD_MIGRATE:
        return f"too late: VM {vm} is already defined on {where}; the move will complete"
    if kind is JobKind.STORAGE_MIGRATE:
        return f"too late: VM {vm} already runs on its new files; the move will complete"
    return f"too late: VM {vm} already runs on {where}; the move will complete"

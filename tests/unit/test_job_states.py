"""A job's life as data: allowed transitions, the point of no return, late cancels."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.engine.jobs import JobHandle
from ferry.errors import RefusedError
from ferry.job import JobKind, JobState, MoveSpec, Phase
from ferry.jobstates import (
    TRANSITIONS,
    IllegalTransition,
    check_transition,
    past_no_return,
    predecessors,
)
from ferry.reports import LiveReport
from ferry.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'ferry.db'}")


def test_every_state_has_its_transitions_and_finished_states_have_none() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for state in JobState:
        assert (TRANSITIONS[state] == frozenset()) == state.finished, state
    assert set(predecessors(JobState.CANCELLED)) == {JobState.QUEUED, JobState.RUNNING,
                                                     JobState.CANCELLING}
    assert predecessors(JobState.QUEUED) == ()


@pytest.mark.parametrize(("current", "new"), [
    (JobState.SUCCEEDED, JobState.RUNNING), (JobState.FAILED, JobState.SUCCEEDED),
    (JobState.QUEUED, JobState.SUCCEEDED), (JobState.QUEUED, JobState.CANCELLING),
    (JobState.CANCELLING, JobState.RUNNING), (JobState.RUNNING, JobState.QUEUED)])
def test_an_illegal_transition_raises_naming_the_job(current: JobState, new: JobState) -> None:
    with pytest.raises(IllegalTransition, match=f"job j-1 cannot go from {current.value} "
                                                f"to {new.value}"):
        check_transition("j-1", current, new)


def test_the_point_of_no_return_is_per_kind() -> None:
    assert not past_no_return(JobKind.MIGRATE, Phase.PRECOPY)
    assert not past_no_return(JobKind.MIGRATE, Phase.REGISTER)  # the destination waits
    assert past_no_return(JobKind.MIGRATE, Phase.SWITCHOVER)
    assert past_no_return(JobKind.STORAGE_MIGRATE, Phase.SWITCHOVER)  # pivoted
    assert past_no_return(JobKind.COLD_MIGRATE, Phase.REGISTER)  # defined there
    assert not past_no_return(JobKind.COLD_MIGRATE, Phase.COPY)
    assert not past_no_return(JobKind.EVACUATE, Phase.DONE)


def _running_move(store: Store) -> JobHandle:
    handle = JobHandle.create(store, JobKind.MIGRATE, "web1", "host1", "host2", "uuid-1",
                              spec=MoveSpec("uuid-1", "host2"), slot_hosts=("host1", "host2"))
    store.own(handle.id, "server-a", 10.0)
    handle.owned_by("server-a")
    handle.start()
    return handle


def test_a_cancel_after_the_switchover_is_too_late_and_the_job_ends_as_it_really_did(
        store: Store) -> None:
    handle = _running_move(store)
    handle.event(Phase.SWITCHOVER, "paused on host1 for the final copy")
    with pytest.raises(RefusedError, match=r"too late: VM web1 already runs on host2; the "
                                           r"move will complete") as refused:
        store.request_cancel(handle.id)
    assert refused.value.exit_code == 4
    assert store.job(handle.id).state is JobState.RUNNING
    handle.finish(JobState.SUCCEEDED, LiveReport(downtime_ms=40))
    job = store.job(handle.id)
    assert (job.state, job.error, job.cancel_requested) == (JobState.SUCCEEDED, None, False)
    assert job.report == LiveReport(downtime_ms=40)


def test_a_cancel_that_loses_the_race_to_the_switchover_records_success(store: Store) -> None:
    handle = _running_move(store)
    store.request_cancel(handle.id)  # before the switchover: accepted
    handle.notice_cancel()
    assert store.job(handle.id).state is JobState.CANCELLING
    handle.finish(JobState.SUCCEEDED, LiveReport())  # libvirt finished before the abort took
    assert store.job(handle.id).state is JobState.SUCCEEDED


def test_a_finished_job_cannot_be_cancelled_or_changed(store: Store) -> None:
    handle = _running_move(store)
    handle.finish(JobState.FAILED, None, "disk full on host2")
    with pytest.raises(Exception, match="already failed"):
        store.request_cancel(handle.id)
    with pytest.raises(IllegalTransition, match="cannot go from failed to cancelled"):
        handle.finish(JobState.CANCELLED, None)
    assert store.job(handle.id).error == "disk full on host2"


def test_a_queued_cancel_withdraws_the_move_at_once(store: Store) -> None:
    handle = JobHandle.create(store, JobKind.MIGRATE, "web1", "host1", "host2", "uuid-1",
                              spec=MoveSpec("uuid-1", "host2"), slot_hosts=("host1", "host2"))
    job = store.request_cancel(handle.id)
    assert job.state is JobState.CANCELLED and job.error == "cancelled before it started"
    assert store.claim_startable("server-a", 10.0) == []  # nothing left to start


def test_a_server_that_lost_the_job_writes_nothing_more(store: Store) -> None:
    handle = _running_move(store)
    store.own(handle.id, "server-b", 10.0)  # as a takeover does
    handle.event(Phase.PRECOPY, "pre-copy iteration 3")
    handle.finish(JobState.FAILED, None, "stale")
    job = store.job(handle.id)
    assert job.state is JobState.RUNNING and job.owner == "server-b"
    assert not any(e.message == "pre-copy iteration 3" for e in job.events)

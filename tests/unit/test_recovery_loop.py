"""The resume loop of an interrupted post-copy, over a scripted source host: what it asks
of the host, what the job records, and what it says when the link never returns. The
lab's tests show it on real QEMU (tests/integration/test_postcopy_recovery.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from ferry import config
from ferry.engine.jobs import JobHandle
from ferry.engine.recovery import RETRY_EVERY_S, PostcopyRecovery
from ferry.errors import ConfigError, MigrationError, VirtError
from ferry.job import Job, JobKind, JobState, Phase
from ferry.model import PostcopyState
from ferry.store.db import Store
from ferry.virt.base import HostConnection, MigrationOptions

DEST_URI = "qemu+tls://198.18.0.12/system"


class Source:
    """host1 after the link failed: QEMU still believes its stream alive until paused."""

    name = "host1"

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.state = PostcopyState.FAILED
        self.qemu_paused = False
        self.asked: list[MigrationOptions] = []

    def postcopy_state(self, name: str) -> PostcopyState:
        return self.state

    def pause_postcopy(self, name: str) -> None:
        if self.qemu_paused:
            raise VirtError("host host1: pause the post-copy of web1: already paused")
        self.qemu_paused = True

    def migrate(self, name: str, options: MigrationOptions) -> None:
        self.asked.append(options)
        if not self.qemu_paused:
            raise VirtError("host host1: QEMU's migration is not paused")
        if self.refusals:
            self.refusals -= 1
            raise VirtError("host host1: unable to connect to server at '198.18.0.12:16514'")
        self.state = PostcopyState.NONE


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def job(tmp_path: Path) -> Iterator[JobHandle]:
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    record = Job(id="j1", kind=JobKind.MIGRATE, vm="web1", source_host="host1",
                 dest_host="host2", state=JobState.QUEUED, phase=Phase.REQUESTED,
                 created_at=time.time())
    store.add_job(record)
    handle = JobHandle(store, record)
    handle.start()
    try:
        yield handle
    finally:
        store.close()


def recovery(source: Source, clock: Clock, wait_s: float) -> PostcopyRecovery:
    return PostcopyRecovery("web1", cast(HostConnection, source), "host2",
                            MigrationOptions(DEST_URI, allow_postcopy=True), wait_s,
                            sleep=clock.sleep, clock=clock)


def test_the_stream_is_paused_then_the_move_resumed_until_the_link_returns(
        job: JobHandle) -> None:
    source, clock = Source(refusals=3), Clock()

    recovery(source, clock, wait_s=60).run(job, "client socket is closed", 240 * 2**20)

    assert source.qemu_paused and source.state is PostcopyState.NONE
    assert [o.postcopy_resume and o.allow_postcopy for o in source.asked] == [True] * 4
    assert clock.now == 3 * RETRY_EVERY_S
    messages = [e.message for e in job.stored().events]
    assert messages[0].startswith("post-copy interrupted (client socket is closed): web1 is "
                                  "paused on host1 and host2")
    assert messages[-1] == "post-copy resumed (attempt 4, 9 s after the link failed)"


def test_a_link_that_never_returns_fails_saying_where_the_memory_is(job: JobHandle) -> None:
    source, clock = Source(refusals=10**6), Clock()

    with pytest.raises(MigrationError) as failed:
        recovery(source, clock, wait_s=30).run(job, "client socket is closed", 240 * 2**20)

    message = failed.value.message
    assert message.startswith("post-copy of web1 from host1 to host2 could not be resumed "
                              "in the 30 s allowed (the last attempt ended 30 s after the "
                              "link failed: host host1: unable to connect")
    assert "paused on both hosts" in message and "about 240 MiB of its memory" in message
    assert "neither may be destroyed" in message and f"--postcopy-resume --tls web1 {DEST_URI}" \
        in message
    # Nothing but resumes was asked: no abort, no destroy, on either host.
    assert all(o.postcopy_resume for o in source.asked) and 30 <= clock.now < 30 + RETRY_EVERY_S


def test_the_wait_is_a_setting_refused_when_it_is_no_number_of_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.POSTCOPY_RECOVERY_ENV, raising=False)
    assert config.ServerSettings.from_env().postcopy_recovery_s == 300
    monkeypatch.setenv(config.POSTCOPY_RECOVERY_ENV, "45")
    assert config.ServerSettings.from_env().postcopy_recovery_s == 45
    for bad in ("abc", "0", "-5", "inf", "nan"):
        monkeypatch.setenv(config.POSTCOPY_RECOVERY_ENV, bad)
        with pytest.raises(ConfigError, match=f"FERRY_POSTCOPY_RECOVERY_S='{bad}'"):
            config.ServerSettings.from_env()

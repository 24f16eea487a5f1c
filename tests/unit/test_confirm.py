"""What a rollback states and when it removes a copy: pure decisions over sightings,
and the later confirmation over fake hosts that stop and start answering."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from ferry.engine.confirm import (
    Confirmer,
    Sighting,
    describe,
    rollback_rule,
    settle,
    unanswered,
)
from ferry.engine.jobs import JobHandle
from ferry.engine.vmotion import data_sent
from ferry.job import Job, JobKind
from ferry.model import VM, VMState
from ferry.reports import HostSighting, LiveReport
from ferry.store.db import Store
from ferry.virt.base import MigrationStats
from ferry.virt.fake import FakeHost, FakeWorld

RUNNING = Sighting("host1", True, VMState.RUNNING)
PAUSED_COPY = Sighting("host2", True, VMState.PAUSED)
ABSENT = Sighting("host2", True, None)
SILENT_DEST = Sighting("host2", False, error="keepalive timed out")
SILENT_SOURCE = Sighting("host1", False, error="libvirtd closed it")


def test_a_host_that_does_not_answer_is_stated_never_counted_absent() -> None:
    text = describe("web1", RUNNING, SILENT_DEST)
    assert text.startswith("web1 is running on host1; ")
    assert "host2 did not answer: whether a copy of web1 remains there is not confirmed" in text
    assert "nothing remains" not in text
    text = describe("web1", SILENT_SOURCE, ABSENT)
    assert "host1 did not answer: whether web1 runs there is not confirmed" in text
    assert "NOT" not in text and text.endswith("nothing remains on host2")
    assert unanswered(SILENT_SOURCE, SILENT_DEST) == ("host1", "host2")
    assert unanswered(RUNNING, ABSENT) == ()


def test_what_a_host_showed_is_named() -> None:
    assert describe("web1", RUNNING, PAUSED_COPY) == (
        "web1 is running on host1; a copy remains on host2 (paused)")
    assert describe("web1", Sighting("host1", True, VMState.SHUTOFF), ABSENT) == (
        "web1 is NOT running on host1 (it is shutoff there); nothing remains on host2")
    assert describe("web1", Sighting("host1", True, None), ABSENT).startswith(
        "web1 is NOT on host1")
    assert describe("web1", Sighting("host1", True, None), PAUSED_COPY) == (
        "web1 is NOT on host1; it runs on host2")


@pytest.mark.parametrize(("source", "dest", "remove"), [
    (RUNNING, PAUSED_COPY, True),  # the incoming copy left over: removed
    (RUNNING, ABSENT, False),  # nothing to remove
    (RUNNING, SILENT_DEST, False),  # not seen: nothing is done to it
    (SILENT_SOURCE, PAUSED_COPY, False),  # the copy may be the only VM left
    (Sighting("host1", True, None), PAUSED_COPY, False),  # the VM moved after all
])
def test_the_rollback_rule_acts_only_on_what_both_hosts_showed(
        source: Sighting, dest: Sighting, remove: bool) -> None:
    assert rollback_rule(source, dest) is remove


def test_data_sent_is_never_a_zero_from_a_cancelled_sample() -> None:
    copying = MigrationStats(elapsed_ms=6000, memory_processed=38 * 2**20,
                             data_processed=38 * 2**20)
    cancelling = MigrationStats(elapsed_ms=6500)  # QEMU drops its counters while cancelling
    sent, basis = data_sent(None, [copying, cancelling], "host2")
    assert sent == 38 * 2**20 and basis.startswith("at least")
    assert data_sent(None, [cancelling], "host2") == (
        None, "unknown: no sample of the copy was taken before it ended")
    assert data_sent(None, [], "host2")[0] is None
    final = MigrationStats(data_processed=99, memory_processed=90)
    assert data_sent(final, [copying], "host2") == (
        99, "libvirt's statistics of the completed migration on host2")


VM1 = VM(name="web1", uuid="u1", host="", state=VMState.RUNNING, memory_kib=2**20, vcpus=1)


def _world() -> FakeWorld:
    world = FakeWorld()
    for i in (1, 2):
        FakeHost(world, f"host{i}", f"uuid-{i}")
    world.host("host1").add_vm(VM1)
    return world


def test_settle_removes_the_leftover_copy_and_says_so() -> None:
    world = _world()
    world.host("host2").add_vm(replace(VM1, state=VMState.PAUSED))
    source, dest, done = settle(world.host, "web1", "host1", "host2")
    assert (source.state, dest.state) == (VMState.RUNNING, None)
    assert done == ["removed the leftover copy (paused) from host2"]
    assert "web1" not in world.host("host2").vms


def test_a_confirmation_comes_once_the_host_answers(tmp_path: Path) -> None:
    world = _world()
    dest = world.host("host2")
    dest.add_vm(VM1)  # the incoming copy that was not seen at the rollback
    dest.go_down()
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    job = JobHandle.create(store, JobKind.MIGRATE, "web1", "host1", "host2")
    waits: list[str] = []

    def wait_for(host: str, timeout: float) -> bool:
        waits.append(host)
        deadline = time.monotonic() + timeout
        while not world.host(host).up and time.monotonic() < deadline:
            time.sleep(0.01)
        return world.host(host).up

    thread = Confirmer(world.connect_by_name, wait_for, within=5).later(
        job, "web1", "host1", "host2", apply_rule=True)
    time.sleep(0.1)
    assert store.job(job.id).report is None  # nothing claimed while host2 is silent
    dest.come_up()
    thread.join(5)
    saved = store.job(job.id)
    message = saved.events[-1].message
    assert message.startswith("confirmed at ")
    assert message.endswith("web1 is running on host1; nothing remains on host2 "
                            "(removed the leftover copy (running) from host2)")
    assert isinstance(saved.report, LiveReport) and saved.report.confirmed is not None
    assert saved.report.confirmed.dest == HostSighting(host="host2", answered=True, state=None,
                                                       error=None)
    assert "web1" not in dest.vms and "host2" in waits


def test_a_confirmation_gives_up_in_bounded_time_and_says_so(tmp_path: Path) -> None:
    world = _world()
    world.host("host2").go_down()
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    job = JobHandle.create(store, JobKind.MIGRATE, "web1", "host1", "host2")
    def never(_host: str, timeout: float) -> bool:
        time.sleep(timeout)
        return False

    Confirmer(world.connect_by_name, never, within=0.2).later(
        job, "web1", "host1", "host2", apply_rule=True).join(5)
    saved = store.job(job.id)
    assert saved.events[-1].message.startswith("not confirmed within 0 s")
    assert isinstance(saved.report, LiveReport) and saved.report.confirmed is not None
    assert saved.report.confirmed.at is None


def test_a_confirmation_ends_quietly_when_ferry_stops(tmp_path: Path) -> None:
    world = _world()
    world.host("host2").go_down()
    store = Store(f"sqlite:///{tmp_path / 'ferry.db'}")
    job = JobHandle.create(store, JobKind.MIGRATE, "web1", "host1", "host2")
    # wait_for answers False long before the deadline only when ferry shuts down
    Confirmer(world.connect_by_name, lambda _h, _t: False, within=60).later(
        job, "web1", "host1", "host2", apply_rule=True).join(5)
    assert store.job(job.id).report is None


def test_a_move_whose_destination_went_silent_is_confirmed_once_it_answers(
        tmp_path: Path) -> None:
    from ferry.engine.controlplane import ControlPlane
    from ferry.virt.fake import Backing

    world = _world()
    shared = Backing()
    for name in ("host1", "host2"):
        world.host(name).add_pool("shared", "/srv/shared", shared)
        world.host(name).add_network("Production")
    source, dest = world.host("host1"), world.host("host2")
    plane = ControlPlane(Store(f"sqlite:///{tmp_path / 'ferry.db'}"), world.connect)
    try:
        for name in ("host1", "host2"):
            plane.add_host(name, f"qemu+tls://{name}/system")
        source.script = [MigrationStats(iteration=1, memory_processed=2**20 * i)
                         for i in range(1, 40)]
        job_id = plane.start_migration("web1", "host2").id
        time.sleep(0.2)
        # host2's link is cut mid-copy: the move fails, its incoming copy still there.
        source.fail_migration, source.leave_incoming = "link down", True
        dest.go_down("the host stopped answering keepalives")
        deadline = time.monotonic() + 10
        while not plane.get_job(job_id).state.finished and time.monotonic() < deadline:
            time.sleep(0.02)
        report = plane.get_job(job_id).report
        assert isinstance(report, LiveReport) and report.rollback is not None
        assert report.rollback.startswith(
            "web1 is running on host1; host2 did not answer: whether a copy of web1 remains "
            "there is not confirmed")
        assert report.unconfirmed == ("host2",) and report.confirmed is None
        assert (report.data_bytes or 0) > 0 and "web1" in dest.vms  # nothing done blind
        dest.come_up()
        deadline = time.monotonic() + 15
        while not _confirmed(plane.get_job(job_id)) and time.monotonic() < deadline:
            time.sleep(0.05)
        job = plane.get_job(job_id)
        assert job.events[-1].message.endswith(
            "web1 is running on host1; nothing remains on host2 "
            "(removed the leftover copy (paused) from host2)"), job.events[-1]
        assert "web1" not in dest.vms and "web1" in source.vms
    finally:
        plane.close()


def _confirmed(job: Job) -> bool:
    return isinstance(job.report, LiveReport) and job.report.confirmed is not None


def test_the_job_report_says_what_is_known_of_the_bytes_and_the_hosts() -> None:
    from ferry.api.schemas import JobOut
    from ferry.cli.console import to_text
    from ferry.cli.render_jobs import job_report

    def shown(report: dict[str, object]) -> str:
        # As the CLI receives it: JSON, read as the job's kind's report.
        return to_text(job_report(JobOut.model_validate({
            "id": "j1", "kind": "migrate", "vm": "web1", "source_host": "host1",
            "dest_host": "host2", "state": "cancelled", "phase": "rollback",
            "created_at": 0.0, "report": report})))

    text = shown({"data_bytes": 38 * 2**20, "iterations": 1,
                  "data_bytes_basis": "at least: the last sample, 6.0 s into the copy",
                  "unconfirmed": ["host2"]})
    assert "data sent      at least 38 MiB in 1 iterations" in text
    assert "not confirmed  host2 did not answer" in text
    text = shown({"data_bytes": None, "iterations": 0, "data_bytes_basis": "unknown: ...",
                  "confirmed": {"detail": "confirmed at 10:00:00: nothing remains on host2"}})
    assert "data sent      unknown in 0 iterations" in text
    assert "confirmed      confirmed at 10:00:00: nothing remains on host2" in text

"""The state store as its users rely on it, against SQLite and a real PostgreSQL.

Every test runs twice through the ``store_url`` fixture: once on a SQLite file
in a temp dir, once on the session's private, throwaway PostgreSQL server
(tests/pgserver.py; ``postgresql+psycopg://`` URL, the form the admin guide
documents). The PostgreSQL runs are marked ``postgres``; deselect them with
``-m "not postgres"``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from pgserver import PostgresServer

from ferry.errors import InputError, NotFound, VMBusy
from ferry.job import Job, JobEvent, JobKind, JobState, Phase
from ferry.jobstates import IllegalTransition
from ferry.model import EvcMode, Host
from ferry.reports import (
    Confirmation,
    DiskReport,
    GuestCheckReport,
    HostSighting,
    LiveProgress,
    LiveReport,
    Reconciled,
    WarningNote,
)
from ferry.store.db import Store


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()


# -- helpers ------------------------------------------------------------------
T0 = 1_717_000_000.123456  # realistic time.time() values, with sub-second digits


def make_job(job_id: str, created_at: float = T0, state: JobState = JobState.QUEUED,
             **changes: Any) -> Job:
    job = Job(id=job_id, kind=JobKind.MIGRATE, vm="web1", source_host="host1",
              dest_host="host2", state=state, phase=Phase.REQUESTED, created_at=created_at,
              events=(JobEvent(created_at, Phase.REQUESTED, f"migration {job_id} requested"),))
    return replace(job, **changes)


# -- hosts --------------------------------------------------------------------
def test_hosts_round_trip_sorted_by_name(store: Store) -> None:
    tuned = Host(name="host2", uri="qemu+tls://10.0.0.2/system",
                 migration_address="198.18.0.12", migration_enabled=False, maintenance=True,
                 max_migrations=4, memory_limit_mib=2048)
    plain = Host(name="host1", uri="qemu+tls://10.0.0.1/system")
    store.add_host(tuned)
    store.add_host(plain)

    hosts = store.hosts()

    assert hosts == [plain, tuned]
    assert all(type(h.migration_enabled) is bool and type(h.maintenance) is bool
               for h in hosts)


def test_update_host_changes_only_the_given_fields(store: Store) -> None:
    store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
    store.update_host("host1", maintenance=True, memory_limit_mib=1024)
    assert store.hosts() == [Host(name="host1", uri="qemu+tls://10.0.0.1/system",
                                  maintenance=True, memory_limit_mib=1024)]


def test_a_host_name_is_registered_once(store: Store) -> None:
    store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
    with pytest.raises(InputError, match=r"\bhost1\b.*already registered"):
        store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.99/system"))
    assert store.hosts() == [Host(name="host1", uri="qemu+tls://10.0.0.1/system")]


def test_remove_host(store: Store) -> None:
    store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
    store.add_host(Host(name="host2", uri="qemu+tls://10.0.0.2/system"))
    store.remove_host("host1")
    assert [h.name for h in store.hosts()] == ["host2"]


def test_removing_an_unknown_host_is_not_found_and_names_it(store: Store) -> None:
    store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
    with pytest.raises(NotFound, match=r"\bghost\b"):
        store.remove_host("ghost")
    assert [h.name for h in store.hosts()] == ["host1"]


# -- clusters -----------------------------------------------------------------
def test_clusters_list_their_hosts_and_refuse_deletion_while_they_have_any(store: Store) -> None:
    store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
    store.add_host(Host(name="host2", uri="qemu+tls://10.0.0.2/system"))
    store.add_cluster("prod")
    store.add_cluster("evc-new")
    with pytest.raises(InputError, match=r"\bprod\b.*already exists"):
        store.add_cluster("prod")
    store.update_host("host2", cluster="prod")
    store.update_host("host1", cluster="prod")

    assert [(c.name, c.hosts) for c in store.clusters()] == [
        ("evc-new", ()), ("prod", ("host1", "host2"))]
    assert [h.cluster for h in store.hosts()] == ["prod", "prod"]
    with pytest.raises(InputError, match=r"prod still has host\(s\) host1, host2"):
        store.remove_cluster("prod")
    store.update_host("host1", cluster=None)
    store.update_host("host2", cluster=None)
    store.remove_cluster("prod")
    with pytest.raises(NotFound, match=r"\bprod\b"):
        store.cluster("prod")
    assert [c.name for c in store.clusters()] == ["evc-new"]


def test_a_cluster_keeps_its_evc_mode_until_it_is_disabled(store: Store) -> None:
    store.add_cluster("evc")
    mode = EvcMode(requested="auto", model="Westmere", vendor="Intel",
                   cpu_xml="<cpu mode='custom' match='exact'><model>Westmere</model></cpu>",
                   features=("aes", "sse4.2"), enabled_at=1.5)
    store.set_cluster_evc("evc", mode)
    assert store.cluster("evc").evc == mode
    store.set_cluster_evc("evc", None)
    assert store.cluster("evc").evc is None
    with pytest.raises(NotFound, match=r"\bnope\b"):
        store.set_cluster_evc("nope", mode)


# -- jobs ---------------------------------------------------------------------
def test_job_round_trip_with_events_progress_and_report(store: Store) -> None:
    job = make_job("job-1")
    store.add_job(job)
    assert store.job("job-1") == job

    running = replace(job, state=JobState.RUNNING, phase=Phase.PRECOPY, started_at=T0 + 0.5,
                      progress=LiveProgress(phase="précopie — 42 %", memory_total=2**40,
                                            memory_remaining=2**39, iteration=3))
    store.transition("job-1", None, JobState.RUNNING, started_at=T0 + 0.5)
    store.update_job("job-1", None, phase=Phase.PRECOPY, progress=running.progress)
    # Recorded out of time order and with a tie: events come back as recorded.
    later = [JobEvent(T0 + 2.0, Phase.STATE_CHECK, "VM web1 is running", {"state": "running"}),
             JobEvent(T0 + 1.0, Phase.COMPATIBILITY, "host2 can run web1", {"findings": []}),
             JobEvent(T0 + 1.0, Phase.PRECOPY, "copying memory",
                      {"bandwidth_mib": 100, "nested": {"a": [1, 2.5, True, None]}})]
    for event in later:
        store.add_event("job-1", event)
    done = replace(running, state=JobState.SUCCEEDED, phase=Phase.DONE, finished_at=T0 + 9.75,
                   events=(*job.events, *later),
                   report=LiveReport(
                       downtime_ms=12, data_bytes=1_073_741_824, policy_actions=("a", "b"),
                       warnings=(WarningNote("cpu.flags", message="é", objects={"vm": "w"}),),
                       disks={"vda": DiskReport("/a.img", "/b.qcow2", "qcow2", 2**30, 2**30,
                                                None, "synchronous")},
                       unconfirmed=("host2",),
                       confirmed=Confirmation(T0 + 9, "confirmed", HostSighting("host1", True,
                                                                                "running"),
                                              done=("removed the copy",)),
                       guest_after_rollback=GuestCheckReport("silent", "qemu", True,
                                                             silent_ms=40, heartbeat_back=True),
                       reconciled=Reconciled("running on host2", "succeeded", cleanup=("x",))))
    store.update_job("job-1", None, phase=Phase.DONE)
    store.transition("job-1", None, JobState.SUCCEEDED, finished_at=T0 + 9.75,
                     report=done.report)
    with pytest.raises(IllegalTransition, match="job-1 cannot go from succeeded to running"):
        store.transition("job-1", None, JobState.RUNNING)

    assert store.job("job-1") == done


def test_an_unknown_job_is_not_found_and_named(store: Store) -> None:
    with pytest.raises(NotFound, match="no-such-job"):
        store.job("no-such-job")


def test_jobs_lists_newest_first_up_to_the_limit(store: Store) -> None:
    created = {"job-a": T0 + 30, "job-b": T0 + 10, "job-c": T0 + 50, "job-d": T0 + 20,
               "job-e": T0 + 40}
    for job_id, at in created.items():
        store.add_job(make_job(job_id, created_at=at, progress=LiveProgress(phase=job_id)))

    listed = store.jobs()
    assert [j.id for j in listed] == ["job-c", "job-e", "job-a", "job-d", "job-b"]
    assert [j.created_at for j in listed] == sorted(created.values(), reverse=True)
    assert all(j.progress == LiveProgress(phase=j.id) for j in listed)
    assert [j.id for j in store.jobs(limit=2)] == ["job-c", "job-e"]


def test_current_jobs_are_every_unfinished_one_then_the_newest_finished(store: Store) -> None:
    # The oldest job still runs and one older than the limit waits: both are listed first.
    store.add_job(make_job("running-old", created_at=T0, state=JobState.RUNNING))
    store.add_job(make_job("queued-old", created_at=T0 + 1))
    for i in range(5):
        store.add_job(make_job(f"done-{i}", created_at=T0 + 10 + i, state=JobState.SUCCEEDED))

    assert [j.id for j in store.current_jobs(limit=2)] == [
        "queued-old", "running-old", "done-4", "done-3"]


def test_two_stores_on_one_database_see_each_others_writes(
        open_store: Callable[[], Store]) -> None:
    one, two = open_store(), open_store()

    one.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
    assert [h.name for h in two.hosts()] == ["host1"]
    with pytest.raises(InputError, match=r"\bhost1\b.*already registered"):
        two.add_host(Host(name="host1", uri="qemu+tls://10.0.0.9/system"))

    job = make_job("job-1")
    two.add_job(job)
    assert one.job("job-1") == job
    running = replace(job, state=JobState.RUNNING, progress=LiveProgress(iteration=10),
                      started_at=T0,
                      phase=Phase.PRECOPY)
    one.transition("job-1", None, JobState.RUNNING, started_at=T0)
    one.update_job("job-1", None, progress=running.progress)
    event = JobEvent(T0 + 1, Phase.PRECOPY, "copying memory", {"percent": 10})
    one.add_event("job-1", event)
    assert two.job("job-1") == replace(running, events=(*job.events, event))

    two.remove_host("host1")
    assert one.hosts() == []
    with pytest.raises(NotFound, match=r"\bhost1\b"):
        one.remove_host("host1")

    one.close()
    two.close()
    restarted = open_store()
    assert [j.id for j in restarted.jobs()] == ["job-1"]
    assert restarted.job("job-1") == replace(running, events=(*job.events, event))


def test_racing_stores_register_a_host_once(open_store: Callable[[], Store]) -> None:
    """Several servers on one database adding the same host: one wins, the rest get InputError."""
    stores = [open_store() for _ in range(6)]
    start = threading.Barrier(len(stores))
    outcomes: list[BaseException | None] = []

    def add(store: Store) -> None:
        start.wait()
        try:
            store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
            outcomes.append(None)
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes.count(None) == 1, outcomes
    for exc in outcomes:
        if exc is not None:
            assert isinstance(exc, InputError) and "host1" in str(exc), repr(exc)
    assert [h.name for h in stores[0].hosts()] == ["host1"]


# -- one move per VM -------------------------------------------------------------
def test_a_vm_has_one_unfinished_move_and_the_refusal_names_it(store: Store) -> None:
    running = make_job("job-a", state=JobState.RUNNING, vm_uuid="uuid-1", dest_host="host3")
    store.add_job(running)
    with pytest.raises(VMBusy, match=r"job-a \(migrate, running\)") as busy:
        store.add_job(make_job("job-b", vm_uuid="uuid-1"))
    assert busy.value.job == replace(running, events=())  # listed as jobs() lists them
    store.add_job(make_job("job-c", vm_uuid="uuid-2"))  # another VM moves meanwhile
    store.add_job(make_job("evac-1", kind=JobKind.EVACUATE))  # a job holding no VM never clashes
    store.add_job(make_job("evac-2", kind=JobKind.EVACUATE))
    assert store.unfinished_job("uuid-1") == replace(running, events=())
    assert {j.id for j in store.unfinished_jobs()} == {"job-a", "job-c"}

    store.transition("job-a", None, JobState.SUCCEEDED, finished_at=T0 + 9)
    assert store.unfinished_job("uuid-1") is None
    store.add_job(make_job("job-b", vm_uuid="uuid-1"))  # the VM is free again
    assert store.unfinished_job("uuid-1") == make_job("job-b", vm_uuid="uuid-1", events=())


def test_racing_stores_start_one_move_of_a_vm(open_store: Callable[[], Store]) -> None:
    """Several servers on one database starting a move of one VM at once: one job."""
    stores = [open_store() for _ in range(6)]
    start = threading.Barrier(len(stores))
    outcomes: dict[str, BaseException | None] = {}

    def add(i: int, store: Store) -> None:
        start.wait()
        try:
            store.add_job(make_job(f"job-{i}", vm_uuid="uuid-1"))
            outcomes[f"job-{i}"] = None
        except BaseException as exc:
            outcomes[f"job-{i}"] = exc

    threads = [threading.Thread(target=add, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = [job_id for job_id, exc in outcomes.items() if exc is None]
    assert len(winners) == 1, outcomes
    for exc in outcomes.values():
        if exc is not None:
            assert isinstance(exc, VMBusy) and winners[0] in exc.message, repr(exc)
    assert [j.id for j in stores[0].jobs()] == winners


# -- PostgreSQL only ----------------------------------------------------------
@pytest.mark.postgres
def test_the_store_survives_a_database_restart(postgres_server: PostgresServer) -> None:
    """A long-running ferry server must not fail its next request (or a job's write)
    because PostgreSQL restarted under its pooled connections."""
    store = Store(postgres_server.empty())
    try:
        store.add_host(Host(name="host1", uri="qemu+tls://10.0.0.1/system"))
        store.add_job(make_job("job-1", state=JobState.RUNNING))

        postgres_server.restart()

        assert [h.name for h in store.hosts()] == ["host1"]
        store.add_event("job-1", JobEvent(T0 + 1, Phase.PRECOPY, "copying memory"))
        assert len(store.job("job-1").events) == 2
    finally:
        store.close()

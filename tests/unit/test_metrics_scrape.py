"""``GET /metrics`` through the real app and control plane over fake hosts, read back with
Prometheus' own parser: the figures move as moves run, wait and are refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fake_plane import finished, plane_over, shared_world
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ferry.api.app import API_PREFIX, create_app
from ferry.engine.controlplane import ControlPlane
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState
from ferry.reports import LiveReport
from ferry.virt.fake import FakeWorld

ADMIN = {"Authorization": "Bearer the-install-token"}


def _vm(name: str, uuid_tail: str, network: str = "Production") -> VM:
    return VM(name=name, uuid=f"6f1c0b0e-0000-4000-8000-0000000000{uuid_tail}", host="host1",
              state=VMState.RUNNING, memory_kib=2**19, vcpus=1,
              disks=(Disk("vda", "disk", "file", f"/srv/shared/{name}.qcow2", "qcow2"),),
              interfaces=(Interface(f"52:54:00:00:00:{uuid_tail}", "network", network),))


@pytest.fixture
def world() -> FakeWorld:
    # db1 is on a network only host1 has: its moves to host2 are refused.
    world = shared_world(2, _vm("web1", "a1"), _vm("web2", "a2"), _vm("db1", "a3", "Backend"))
    world.host("host1").add_network("Backend")
    return world


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


@pytest.fixture
def http(plane: ControlPlane, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(plane, admin_accounts(tmp_path, "the-install-token"))) as http:
        yield http


@pytest.fixture
def viewer(http: TestClient) -> dict[str, str]:
    """A viewer's token: all a scrape needs."""
    assert http.post(f"{API_PREFIX}/users", json={"name": "prometheus", "role": "viewer"},
                     headers=ADMIN).status_code == 201
    made = http.post(f"{API_PREFIX}/tokens", json={"user": "prometheus"}, headers=ADMIN)
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(http: TestClient, headers: dict[str, str]) -> Samples:
    """Every sample of the scrape, by name and labels, as Prometheus parses the text."""
    resp = http.get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """(upper bound, count) of one histogram's buckets, by bound."""
    found = [(float(dict(key)["le"]), v) for (n, key), v in samples.items()
             if n == f"{name}_bucket" and {k: x for k, x in key if k != "le"} == labels]
    return sorted(found)


def migrate(http: TestClient, vm: str, host: str) -> str:
    resp = http.post(f"{API_PREFIX}/migrations", json={"vm": vm, "host": host}, headers=ADMIN)
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["id"]
    return job_id


def test_a_scrape_needs_a_token_and_a_viewers_is_enough(
        http: TestClient, viewer: dict[str, str]) -> None:
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.get("/metrics", headers=viewer).status_code == 200


def test_a_live_move_moves_the_counters_and_histograms_by_its_own_report(
        http: TestClient, plane: ControlPlane, viewer: dict[str, str]) -> None:
    live = {"kind": "migrate", "result": "succeeded"}
    before = scrape(http, viewer)

    job = finished(plane, migrate(http, "web1", "host2"))

    after = scrape(http, viewer)
    assert job.state is JobState.SUCCEEDED
    report = job.report
    assert isinstance(report, LiveReport) and report.total_ms is not None
    assert report.downtime_ms is not None
    assert value(after, "ferry_migrations_total", **live) \
        == value(before, "ferry_migrations_total", **live) + 1
    assert value(after, "ferry_migrations_total", kind="migrate", result="failed") \
        == value(before, "ferry_migrations_total", kind="migrate", result="failed")
    assert value(after, "ferry_migration_sent_bytes_total", kind="migrate") \
        == value(before, "ferry_migration_sent_bytes_total", kind="migrate") \
        + (report.data_bytes or 0)  # the fake host samples no bytes; the store test does

    for name, labels, seconds in (
            ("ferry_migration_duration_seconds", live, report.total_ms / 1000),
            ("ferry_migration_downtime_seconds", {"kind": "migrate"},
             report.downtime_ms / 1000)):
        shown = buckets(after, name, **labels)
        earlier = dict(buckets(before, name, **labels))
        counts = [n for _bound, n in shown]
        assert counts == sorted(counts), f"{name}: buckets are not cumulative"
        assert shown[-1][0] == float("inf")
        count = value(after, f"{name}_count", **labels)
        assert shown[-1][1] == count == value(before, f"{name}_count", **labels) + 1
        assert value(after, f"{name}_sum", **labels) == pytest.approx(
            value(before, f"{name}_sum", **labels) + seconds)
        # The move is in every bucket at or above its value and in none below it.
        for bound, n in shown:
            assert n == earlier.get(bound, 0) + (1 if seconds <= bound else 0), (name, bound)


def test_slots_in_use_and_the_queue_show_a_move_holding_a_host(
        http: TestClient, plane: ControlPlane, world: FakeWorld,
        viewer: dict[str, str]) -> None:
    assert http.patch(f"{API_PREFIX}/hosts/host2", json={"max_migrations": 1},
                      headers=ADMIN).status_code == 200
    source = world.host("host1")
    source.hold = threading.Event()
    first = migrate(http, "web1", "host2")
    assert source.migrating.wait(10), "the first move never started"
    second = migrate(http, "web2", "host2")  # host2's one slot is taken: it waits

    during = scrape(http, viewer)
    source.hold.set()
    assert finished(plane, first).state is JobState.SUCCEEDED
    assert finished(plane, second).state is JobState.SUCCEEDED
    after = scrape(http, viewer)

    assert plane.get_job(second).started_at is not None
    assert [value(during, "ferry_migration_slots_in_use", host=h) for h in ("host1", "host2")] \
        == [1, 1]
    assert value(during, "ferry_migration_slots", host="host2") == 1
    assert value(during, "ferry_migrations_queued", kind="migrate") == 1
    assert [value(after, "ferry_migration_slots_in_use", host=h) for h in ("host1", "host2")] \
        == [0, 0]
    assert value(after, "ferry_migrations_queued", kind="migrate") == 0
    assert value(after, "ferry_migrations_total", kind="migrate", result="succeeded") == 2


def test_refused_checks_and_moves_are_counted_by_the_check_that_refused_them(
        http: TestClient, world: FakeWorld, viewer: dict[str, str]) -> None:
    before = scrape(http, viewer)
    check = http.post(f"{API_PREFIX}/checks", json={"vm": "db1", "host": "host2"},
                      headers=viewer)
    assert check.status_code == 200 and check.json()["allowed"] is False
    codes = sorted(f["code"] for f in check.json()["findings"] if f["status"] == "error")
    refused = http.post(f"{API_PREFIX}/migrations", json={"vm": "db1", "host": "host2"},
                        headers=ADMIN)
    assert refused.status_code == 409
    after = scrape(http, viewer)

    assert "network.missing" in codes
    assert "db1" in world.host("host1").vms
    for code in codes:
        for request in ("check", "migration"):
            assert value(after, "ferry_preflight_refusals_total", code=code, request=request) \
                == value(before, "ferry_preflight_refusals_total", code=code,
                         request=request) + 1, (code, request)
    # A check that passes refuses nothing.
    assert http.post(f"{API_PREFIX}/checks", json={"vm": "web1", "host": "host2"},
                     headers=viewer).json()["allowed"] is True
    assert scrape(http, viewer) == after


def test_hosts_are_counted_by_connection_state(
        http: TestClient, world: FakeWorld, viewer: dict[str, str]) -> None:
    assert (value(scrape(http, viewer), "ferry_hosts", state="connected"),
            value(scrape(http, viewer), "ferry_hosts", state="disconnected")) == (2, 0)
    world.host("host2").go_down()
    shown = scrape(http, viewer)
    assert (value(shown, "ferry_hosts", state="connected"),
            value(shown, "ferry_hosts", state="disconnected")) == (1, 1)

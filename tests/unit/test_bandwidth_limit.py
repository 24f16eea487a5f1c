"""A live move's bandwidth limit: its own, its hosts', the lowest handed to libvirt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_world import AUTH, TOKEN, WEB1
from auth_support import admin_accounts
from fake_plane import finished, plane_over, shared_world
from fastapi.testclient import TestClient

from ferry.api.app import API_PREFIX, create_app
from ferry.cli import main as cli
from ferry.cli.client import FerryClient
from ferry.engine.controlplane import ControlPlane
from ferry.engine.policy import bandwidth_limit
from ferry.job import JobState
from ferry.model import MAX_BANDWIDTH_MIBPS
from ferry.virt.fake import FakeWorld


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FakeWorld, ControlPlane, TestClient]]:
    world = shared_world(2, WEB1)
    with plane_over(world, tmp_path) as plane:
        yield world, plane, TestClient(create_app(plane, admin_accounts(tmp_path, TOKEN)))


def host_limit(plane: ControlPlane, host: str) -> int | None:
    return {h.name: h for h in plane.list_hosts()}[host].migration_bandwidth_mibps


def test_the_lowest_limit_wins_and_says_whose_it_is() -> None:
    assert bandwidth_limit(None, {"host1": None, "host2": None}) == (None, "no limit")
    assert bandwidth_limit(100, {"host1": None, "host2": 40}) == (40, "host host2's limit")
    assert bandwidth_limit(10, {"host1": 50, "host2": 40}) == (10, "asked for this move")
    assert bandwidth_limit(40, {"host1": 40, "host2": None}) == (
        40, "asked for this move, host host1's limit")


def move(world: FakeWorld, plane: ControlPlane, client: TestClient,
         **asked: object) -> tuple[int | None, list[str]]:
    """Move WEB1 to the host it is not on; what libvirt was asked, and the job's word."""
    source = plane.get_vm("web1").host
    dest = "host2" if source == "host1" else "host1"
    started = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                          json={"vm": "web1", "host": dest, **asked})
    assert started.status_code == 202, started.text
    job = finished(plane, started.json()["id"])
    assert job.state is JobState.SUCCEEDED, job.error
    said = [e.message for e in job.events if "bandwidth" in e.message]
    return world.host(source).migrated_with[-1].bandwidth_mibps, said


def test_a_move_runs_under_the_lowest_of_its_own_limit_and_its_hosts(
        served: tuple[FakeWorld, ControlPlane, TestClient]) -> None:
    world, plane, client = served
    assert move(world, plane, client) == (None, [])
    limited = client.patch(f"{API_PREFIX}/hosts/host2", headers=AUTH,
                           json={"migration_bandwidth_mibps": 40})
    assert limited.status_code == 200 and limited.json()["migration_bandwidth_mibps"] == 40
    # host2 is the destination, then the source: its limit holds both ways.
    assert move(world, plane, client, bandwidth_mibps=100) == (
        40, ["migration bandwidth limited to 40 MiB/s (host host2's limit)"])
    assert move(world, plane, client, bandwidth_mibps=10) == (
        10, ["migration bandwidth limited to 10 MiB/s (asked for this move)"])
    cleared = client.patch(f"{API_PREFIX}/hosts/host2", headers=AUTH,
                           json={"clear_migration_bandwidth": True})
    assert cleared.json()["migration_bandwidth_mibps"] is None
    assert move(world, plane, client) == (None, [])


@pytest.mark.parametrize("asked", [0, -5, MAX_BANDWIDTH_MIBPS + 1, "fast"])
def test_a_bad_limit_for_a_move_is_refused_naming_it_and_nothing_moves(
        served: tuple[FakeWorld, ControlPlane, TestClient], asked: object) -> None:
    world, plane, client = served
    refused = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                          json={"vm": "web1", "host": "host2", "bandwidth_mibps": asked})
    assert refused.status_code == 422
    assert "bandwidth_mibps" in refused.json()["error"]["message"]
    assert plane.list_jobs() == [] and world.host("host1").migrated_with == []
    assert "web1" in {vm.name for vm in world.host("host1").list_vms()}


def test_a_limit_on_a_move_that_crosses_no_network_is_refused(
        served: tuple[FakeWorld, ControlPlane, TestClient]) -> None:
    _, plane, client = served
    for where in ({"datastore": "shared"}, {"host": "host2", "cold": True}):
        refused = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                              json={"vm": "web1", "bandwidth_mibps": 50, **where})
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert "live move between hosts" in message and "web1" in message
    assert plane.list_jobs() == []


def test_a_bad_host_limit_is_refused_and_the_host_keeps_its_own(
        served: tuple[FakeWorld, ControlPlane, TestClient]) -> None:
    _, plane, client = served
    client.patch(f"{API_PREFIX}/hosts/host1", headers=AUTH,
                 json={"migration_bandwidth_mibps": 200})
    refused = client.patch(f"{API_PREFIX}/hosts/host1", headers=AUTH,
                           json={"migration_bandwidth_mibps": 0})
    assert refused.status_code == 422
    assert "migration_bandwidth_mibps" in refused.json()["error"]["message"]
    assert host_limit(plane, "host1") == 200


def test_limits_set_and_asked_from_the_cli(
        served: tuple[FakeWorld, ControlPlane, TestClient],
        capsys: pytest.CaptureFixture[str]) -> None:
    world, plane, client = served

    def ferry(*argv: str) -> tuple[int, str]:
        code = cli.main(list(argv), client=FerryClient(http=client, token=TOKEN))
        out = capsys.readouterr()
        return code, out.out + out.err

    code, out = ferry("host", "set", "host1", "--migration-bandwidth", "60")
    assert code == 0 and "migration bandwidth" in out and "60 MiB/s" in out
    code, out = ferry("host", "set", "host1", "--migration-bandwidth", "lots")
    assert code == 2 and "'lots'" in out
    assert host_limit(plane, "host1") == 60
    assert ferry("migrate", "web1", "--host", "host2", "--bandwidth", "25")[0] == 0
    assert world.host("host1").migrated_with[-1].bandwidth_mibps == 25
    code, out = ferry("host", "set", "host1", "--migration-bandwidth", "none")
    assert code == 0 and "no limit" in out
    assert host_limit(plane, "host1") is None

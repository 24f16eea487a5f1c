"""A live move's convergence policy, chosen per move through the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fake_plane import finished, plane_over, shared_world
from fastapi.testclient import TestClient

from ferry.api.app import API_PREFIX, create_app
from ferry.engine.controlplane import ControlPlane
from ferry.engine.policy import DEFAULT_POLICY, POLICIES
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState

TOKEN = "policy-install-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WEB1 = VM(name="web1", uuid="6f1c0b0e-0000-4000-8000-0000000000d1", host="host1",
          state=VMState.RUNNING, memory_kib=2**19, vcpus=1,
          disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
          interfaces=(Interface("52:54:00:00:00:d1", "network", "Production"),))


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(shared_world(2, WEB1), tmp_path) as plane:
        yield plane


@pytest.fixture
def client(plane: ControlPlane, tmp_path: Path) -> TestClient:
    return TestClient(create_app(plane, admin_accounts(tmp_path, TOKEN)))


def test_the_policies_are_listed_with_what_they_do(client: TestClient) -> None:
    listed = client.get(f"{API_PREFIX}/policies", headers=AUTH).json()
    assert [p["name"] for p in listed] == list(POLICIES)
    by_name = {p["name"]: p for p in listed}
    assert by_name["postcopy"]["allow_postcopy"] is True
    assert by_name["default"]["auto_converge"] is True
    assert all(p["description"] for p in listed)


def test_an_unknown_policy_is_refused_naming_the_choices_and_nothing_starts(
        client: TestClient, plane: ControlPlane) -> None:
    refused = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                          json={"vm": "web1", "host": "host2", "policy": "fastest"})
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "'fastest'" in message and "default" in message and "postcopy" in message
    assert plane.list_jobs() == []
    assert plane.get_vm("web1").host == "host1"


def test_the_chosen_policy_is_the_moves_and_its_report_says_so(
        client: TestClient, plane: ControlPlane) -> None:
    started = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                          json={"vm": "web1", "host": "host2", "policy": "postcopy"})
    assert started.status_code == 202, started.text
    job = finished(plane, started.json()["id"])
    assert job.state is JobState.SUCCEEDED
    assert job.spec is not None and job.spec.policy == "postcopy"
    assert job.report is not None and getattr(job.report, "policy", None) == "postcopy"

    again = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                        json={"vm": "web1", "host": "host1"})
    job = finished(plane, again.json()["id"])
    assert job.spec is not None and job.spec.policy == DEFAULT_POLICY

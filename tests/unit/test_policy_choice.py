"""A live move's convergence policy, chosen per move through the API and the CLI."""

from __future__ import annotations

from api_world import AUTH, client, plane, world
from fake_plane import finished
from fastapi.testclient import TestClient

from ferry.api.app import API_PREFIX
from ferry.engine.controlplane import ControlPlane
from ferry.engine.policy import DEFAULT_POLICY, POLICIES
from ferry.job import JobState

__all__ = ["client", "plane", "world"]  # the fixtures, imported for this module's tests


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

"""A live move's convergence policy, chosen per move through the API and the CLI."""

from __future__ import annotations

import pytest
from api_world import AUTH, TOKEN, client, plane, world
from fake_plane import finished
from fastapi.testclient import TestClient

from ferry.api.app import API_PREFIX
from ferry.cli import main as cli
from ferry.cli.client import FerryClient
from ferry.engine.controlplane import ControlPlane
from ferry.engine.policy import DEFAULT_POLICY, POLICIES
from ferry.job import JobState
from ferry.model import PolicyChoice

__all__ = ["client", "plane", "world"]  # the fixtures, imported for this module's tests


def test_the_policies_are_listed_with_what_they_do(client: TestClient) -> None:
    listed = client.get(f"{API_PREFIX}/policies", headers=AUTH).json()
    assert [p["name"] for p in listed] == list(POLICIES)
    by_name = {p["name"]: p for p in listed}
    assert by_name["postcopy"]["allow_postcopy"] is True
    assert by_name["throttle"]["auto_converge"] is True
    assert all(p["description"] for p in listed)


def test_an_unknown_policy_is_refused_naming_the_choices_and_nothing_starts(
        client: TestClient, plane: ControlPlane) -> None:
    refused = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                          json={"vm": "web1", "host": "host2", "policy": "fastest"})
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "'fastest'" in message and "throttle" in message and "postcopy" in message
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


def started_policy(client: TestClient, plane: ControlPlane, vm: str, host: str,
                   **asked: str) -> tuple[str, str]:
    """The policy the move ran with, and the event saying why."""
    started = client.post(f"{API_PREFIX}/migrations", headers=AUTH,
                          json={"vm": vm, "host": host, **asked})
    assert started.status_code == 202, started.text
    job = finished(plane, started.json()["id"])
    assert job.spec is not None
    [why] = [e.message for e in job.events if e.message.startswith("convergence policy")]
    return job.spec.policy, why


def test_a_moves_policy_is_the_one_asked_else_the_vms_else_its_clusters_else_ferrys(
        client: TestClient, plane: ControlPlane) -> None:
    assert started_policy(client, plane, "web1", "host2") == (
        "auto", "convergence policy auto (ferry's default)")
    plane.create_cluster("prod")
    plane.add_cluster_host("prod", "host1")
    plane.add_cluster_host("prod", "host2")
    cluster = client.put(f"{API_PREFIX}/clusters/prod/policy", headers=AUTH,
                         json={"policy": "throttle"})
    assert cluster.status_code == 200 and cluster.json()["migration_policy"] == "throttle"
    assert started_policy(client, plane, "web1", "host1") == (
        "throttle", "convergence policy throttle (cluster prod's default)")

    own = client.put(f"{API_PREFIX}/vms/web1/policy", headers=AUTH, json={"policy": "postcopy"})
    assert own.json() == {"vm": "web1", "default": "postcopy", "policy": "postcopy",
                          "why": "VM web1's default"}
    assert started_policy(client, plane, "web1", "host2")[0] == "postcopy"
    assert started_policy(client, plane, "web1", "host1", policy="throttle") == (
        "throttle", "convergence policy throttle (asked for this move)")

    unset = client.put(f"{API_PREFIX}/vms/web1/policy", headers=AUTH, json={"policy": None})
    assert unset.json()["why"] == "cluster prod's default"
    shown = client.get(f"{API_PREFIX}/vms/web1/policy", headers=AUTH).json()
    assert (shown["default"], shown["policy"]) == (None, "throttle")


def test_an_unknown_default_is_refused_naming_the_choices_and_nothing_changes(
        client: TestClient, plane: ControlPlane) -> None:
    refused = client.put(f"{API_PREFIX}/vms/web1/policy", headers=AUTH,
                         json={"policy": "fastest"})
    assert refused.status_code == 400 and "'fastest'" in refused.json()["error"]["message"]
    missing = client.put(f"{API_PREFIX}/vms/nosuchvm/policy", headers=AUTH,
                         json={"policy": "auto"})
    assert missing.status_code == 404 and "nosuchvm" in missing.json()["error"]["message"]
    assert plane.vm_policy("web1").default is None
    plane.create_cluster("prod")
    refused = client.put(f"{API_PREFIX}/clusters/prod/policy", headers=AUTH,
                         json={"policy": "fastest"})
    assert refused.status_code == 400 and plane.list_clusters()[0].migration_policy is None


def test_defaults_set_shown_and_unset_from_the_cli(
        client: TestClient, plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    def ferry(*argv: str) -> tuple[int, str]:
        code = cli.main(list(argv), client=FerryClient(http=client, token=TOKEN))
        out = capsys.readouterr()
        return code, out.out + out.err

    plane.create_cluster("prod")
    plane.add_cluster_host("prod", "host1")
    assert ferry("policy", "set", "throttle", "--cluster", "prod")[0] == 0
    code, out = ferry("policy", "show", "web1")
    assert code == 0 and "runs with throttle (cluster prod's default)" in out
    assert ferry("policy", "set", "postcopy", "--vm", "web1")[0] == 0
    assert "runs with postcopy (VM web1's default)" in ferry("policy", "show", "web1")[1]
    assert ferry("policy", "unset", "--vm", "web1")[0] == 0
    code, out = ferry("policy", "set", "auto")
    assert code == 2 and "--cluster CLUSTER or --vm VM" in out
    code, out = ferry("policy", "set", "fastest", "--vm", "web1")
    assert code == 2 and "'fastest'" in out
    assert plane.vm_policy("web1") == PolicyChoice("web1", None, "throttle",
                                                   "cluster prod's default")

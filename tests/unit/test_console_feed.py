"""The console's server side over fake hosts: its page and files with a policy that runs
only ferry's own scripts, who a token is, and the pushed state's shape and order."""

from __future__ import annotations

import json

from api_world import TOKEN, client, plane, world
from fake_plane import finished
from fastapi.testclient import TestClient

from ferry.api.app import API_PREFIX
from ferry.api.live import inventory_state, jobs_state, sse_message
from ferry.console import CONTENT_SECURITY_POLICY, STATIC
from ferry.engine.controlplane import ControlPlane
from ferry.job import JobState

__all__ = ["client", "plane", "world"]  # the fixtures, imported for this module's tests


def test_the_page_and_its_files_are_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    # Every script the page names is there, and no page asset comes from elsewhere.
    for path in ("/console/js/main.js", "/console/console.css"):
        assert path in page.text
        assert client.get(path).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text
    for script in (STATIC / "js").rglob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text, f"{script.name} parses markup"
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_session_says_whose_token_it_is(client: TestClient) -> None:
    assert client.get(f"{API_PREFIX}/session").status_code == 401
    who = client.get(f"{API_PREFIX}/session", headers={"Authorization": f"Bearer {TOKEN}"})
    assert who.json() == {"user": "admin", "role": "admin"}


def test_events_need_a_token(client: TestClient) -> None:
    refused = client.get(f"{API_PREFIX}/events")
    assert refused.status_code == 401
    assert "token" in refused.json()["error"]["message"]


def test_an_event_is_one_json_data_line() -> None:
    message = sse_message("jobs", [{"vm": "a\nb"}])
    assert message.endswith(b"\n\n")
    lines = message.decode().split("\n")
    assert lines[0] == "event: jobs" and lines[1].startswith("data: ")
    assert json.loads(lines[1].removeprefix("data: ")) == [{"vm": "a\nb"}]


def test_pushed_state_is_the_apis_and_unfinished_jobs_come_first(plane: ControlPlane) -> None:
    inventory = inventory_state(plane)
    assert sorted(inventory) == ["clusters", "datastores", "hosts", "networks", "vms"]
    assert [vm["name"] for vm in inventory["vms"]] == ["web1"]
    assert {h["name"] for h in inventory["hosts"]} == {"host1", "host2"}

    done = plane.start_migration("web1", "host2", None, "same", (), False)
    assert finished(plane, done.id).state is JobState.SUCCEEDED
    jobs = jobs_state(plane)
    assert [j["id"] for j in jobs] == [done.id]
    assert jobs[0]["state"] == "succeeded" and jobs[0]["requested_by"] is None

"""Users, roles, tokens and the audit trail through the REST API, over fake hosts.

The real control plane and app: a request outside its user's role is refused
naming the role it needs and changes nothing on the hosts; a revoked, expired
or orphaned token stops working at the next request; every change request,
allowed or refused, is in the audit trail with who, what, from where and how
it ended, and no secret is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fake_plane import finished, plane_over, shared_world
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ferry import config
from ferry.api.app import API_PREFIX, create_app
from ferry.auth.accounts import Accounts
from ferry.auth.roles import ROUTES
from ferry.auth.tokens import DAY_S, DEFAULT_DAYS, FILE_TOKEN_DAYS
from ferry.engine.controlplane import ControlPlane
from ferry.job import JobState
from ferry.model import VM, Disk, Interface, VMState
from ferry.server import open_accounts
from ferry.store.db import Store
from ferry.virt.fake import FakeWorld

ADMIN_TOKEN = "the-install-token"
WEB1 = VM(name="web1", uuid="6f1c0b0e-0000-4000-8000-0000000000a1", host="host1",
          state=VMState.RUNNING, memory_kib=2**19, vcpus=1,
          disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
          interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> FakeWorld:
    return shared_world(2, WEB1)


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path) as plane:
        yield plane


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(tmp_path: Path, plane: ControlPlane, clock: Clock) -> Accounts:
    return admin_accounts(tmp_path, ADMIN_TOKEN, clock)


@pytest.fixture
def http(plane: ControlPlane, accounts: Accounts) -> Iterator[TestClient]:
    with TestClient(create_app(plane, accounts)) as http:
        yield http


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = auth(ADMIN_TOKEN)


def user_with_token(http: TestClient, name: str, role: str) -> str:
    """A new user of ``role`` and a token of theirs, made by the admin."""
    assert http.post(f"{API_PREFIX}/users", json={"name": name, "role": role},
                     headers=ADMIN).status_code == 201
    made = http.post(f"{API_PREFIX}/tokens", json={"user": name}, headers=ADMIN)
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def audit(http: TestClient, **params: object) -> list[dict[str, object]]:
    resp = http.get(f"{API_PREFIX}/audit", params=params, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, object]] = resp.json()
    return rows


def test_every_route_of_the_app_is_in_the_role_table_and_nothing_else_is(
        http: TestClient) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    app_routes = {(method.upper(), path.removeprefix(API_PREFIX))
                  for path, methods in paths.items() if path.startswith(API_PREFIX)
                  for method in methods}
    # And the app's own routes outside the API, in the schema or not (GET /metrics is
    # not), but the two anyone may call: /health, so a balancer can tell the server is
    # up, and / (the console's page, which asks for a token before it shows anything).
    app_routes |= {(method, route.path) for route in http.app.routes
                   if isinstance(route, APIRoute) and route.path not in ("/health", "/")
                   for method in route.methods}
    assert app_routes == set(ROUTES)


def test_a_viewer_cannot_start_a_migration_and_nothing_moves(
        http: TestClient, plane: ControlPlane, world: FakeWorld) -> None:
    bob = user_with_token(http, "bob", "viewer")
    resp = http.post(f"{API_PREFIX}/migrations", json={"vm": "web1", "host": "host2"},
                     headers=auth(bob))
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["message"] == ("user bob has role viewer; starting a migration needs role "
                                "operator")
    assert error["type"] == "Forbidden" and error["exit_code"] == 9
    assert plane.list_jobs() == []
    assert "web1" in world.host("host1").vms and "web1" not in world.host("host2").vms
    [row] = audit(http, user="bob")
    assert (row["action"], row["target"], row["status"], row["address"]) == (
        "migration.start", "web1", 403, "testclient")
    assert row["outcome"] == error["message"]


def test_an_operator_moves_the_vm_and_the_job_and_trail_name_them(
        http: TestClient, plane: ControlPlane, world: FakeWorld) -> None:
    olga = user_with_token(http, "olga", "operator")
    resp = http.post(f"{API_PREFIX}/migrations", json={"vm": "web1", "host": "host2"},
                     headers=auth(olga))
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert resp.json()["requested_by"] == "olga"
    assert finished(plane, job_id).state is JobState.SUCCEEDED
    assert "web1" in world.host("host2").vms
    shown = http.get(f"{API_PREFIX}/jobs/{job_id}", headers=auth(olga)).json()
    assert shown["requested_by"] == "olga"
    assert "requested by olga" in shown["events"][0]["message"]
    [row] = audit(http, user="olga")
    assert (row["action"], row["target"], row["status"], row["outcome"]) == (
        "migration.start", "web1", 202, f"job {job_id}")


def test_an_evacuations_moves_are_asked_for_by_whoever_asked_for_it(
        http: TestClient, plane: ControlPlane) -> None:
    olga = user_with_token(http, "olga", "operator")
    resp = http.post(f"{API_PREFIX}/hosts/host1/maintenance/enter", headers=auth(olga))
    assert resp.status_code == 202, resp.text
    evacuation = finished(plane, resp.json()["id"])
    assert evacuation.state is JobState.SUCCEEDED and evacuation.requested_by == "olga"
    [move] = [j for j in plane.list_jobs() if j.parent_id == evacuation.id]
    assert move.vm == "web1" and move.requested_by == "olga"


@pytest.mark.parametrize(("role", "method", "path", "body", "needed"), [
    ("viewer", "GET", "/vms", None, None),
    ("viewer", "GET", "/jobs", None, None),
    ("viewer", "POST", "/checks", {"vm": "web1", "host": "host2"}, None),
    ("viewer", "POST", "/vms/web1/power", {"action": "off"}, "operator"),
    ("viewer", "GET", "/audit", None, "admin"),
    ("operator", "POST", "/refresh", None, None),
    ("operator", "POST", "/vms/web1/power", {"action": "off"}, None),
    ("operator", "POST", "/hosts", {"name": "host3", "uri": "qemu+tls://host3/system"},
     "admin"),
    ("operator", "PATCH", "/hosts/host1", {"max_migrations": 1}, "admin"),
    ("operator", "POST", "/clusters", {"name": "prod"}, "admin"),
    ("operator", "POST", "/users", {"name": "eve", "role": "admin"}, "admin"),
    ("admin", "POST", "/clusters", {"name": "prod"}, None),
    ("admin", "PATCH", "/hosts/host1", {"max_migrations": 1}, None),
])
def test_each_role_is_allowed_or_refused_naming_the_role_needed(
        http: TestClient, role: str, method: str, path: str, body: object,
        needed: str | None) -> None:
    token = ADMIN_TOKEN if role == "admin" else user_with_token(http, "someone", role)
    resp = http.request(method, API_PREFIX + path, json=body, headers=auth(token))
    if needed is None:
        assert resp.status_code < 300, resp.text
        return
    assert resp.status_code == 403
    message = resp.json()["error"]["message"]
    assert message.startswith(f"user someone has role {role}; ")
    assert message.endswith(f" needs role {needed}")


def test_a_refused_host_change_changes_nothing(http: TestClient, plane: ControlPlane) -> None:
    olga = user_with_token(http, "olga", "operator")
    before = [h.max_migrations for h in plane.list_hosts()]
    resp = http.patch(f"{API_PREFIX}/hosts/host1", json={"max_migrations": 1},
                      headers=auth(olga))
    assert resp.status_code == 403
    assert [h.max_migrations for h in plane.list_hosts()] == before


def test_a_user_creates_lists_and_revokes_their_own_tokens(http: TestClient) -> None:
    bob = user_with_token(http, "bob", "viewer")
    made = http.post(f"{API_PREFIX}/tokens", json={"label": "laptop", "expires_days": 7},
                     headers=auth(bob))
    assert made.status_code == 201, made.text
    second = made.json()
    assert second["user"] == "bob" and second["label"] == "laptop"
    assert second["expires_at"] - second["created_at"] == pytest.approx(7 * DAY_S)
    listed = http.get(f"{API_PREFIX}/tokens", headers=auth(bob))
    assert sorted(t["id"] for t in listed.json()) == sorted(
        [bob.split(".")[1], second["id"]])
    for secret in (bob, second["token"]):
        assert secret.split(".")[2] not in listed.text
    assert all("token" not in t and "hash" not in t for t in listed.json())
    # Another user's tokens are the admin's business.
    others = http.get(f"{API_PREFIX}/tokens", params={"user": "admin"}, headers=auth(bob))
    assert others.status_code == 403
    revoked = http.delete(f"{API_PREFIX}/tokens/{second['id']}", headers=auth(bob))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    gone = http.get(f"{API_PREFIX}/vms", headers=auth(second["token"]))
    assert gone.status_code == 401
    assert gone.json()["error"]["message"] == f"API token {second['id']} is revoked"
    assert http.get(f"{API_PREFIX}/vms", headers=auth(bob)).status_code == 200


def test_a_token_expires_and_a_new_one_lasts_the_default(
        http: TestClient, clock: Clock) -> None:
    bob = user_with_token(http, "bob", "viewer")
    [listed] = http.get(f"{API_PREFIX}/tokens", headers=auth(bob)).json()
    assert listed["expires_at"] == clock.now + DEFAULT_DAYS * DAY_S
    clock.now = listed["expires_at"] - 1
    assert http.get(f"{API_PREFIX}/vms", headers=auth(bob)).status_code == 200
    clock.now = listed["expires_at"]
    resp = http.get(f"{API_PREFIX}/vms", headers=auth(bob))
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] == f"API token {listed['id']} is expired"


def test_no_token_is_401(http: TestClient) -> None:
    resp = http.get(f"{API_PREFIX}/vms")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert "missing API token" in resp.json()["error"]["message"]


def test_a_removed_users_tokens_stop_working(http: TestClient) -> None:
    bob = user_with_token(http, "bob", "operator")
    assert http.get(f"{API_PREFIX}/vms", headers=auth(bob)).status_code == 200
    assert http.delete(f"{API_PREFIX}/users/bob", headers=ADMIN).status_code == 204
    assert http.get(f"{API_PREFIX}/vms", headers=auth(bob)).status_code == 401
    assert [u["name"] for u in http.get(f"{API_PREFIX}/users", headers=ADMIN).json()] == [
        "admin"]


def test_the_last_admin_cannot_be_removed(http: TestClient) -> None:
    resp = http.delete(f"{API_PREFIX}/users/admin", headers=ADMIN)
    assert resp.status_code == 400
    assert "last admin" in resp.json()["error"]["message"]
    ann = user_with_token(http, "ann", "admin")
    assert http.delete(f"{API_PREFIX}/users/admin", headers=auth(ann)).status_code == 204
    assert http.delete(f"{API_PREFIX}/users/ann", headers=auth(ann)).status_code == 400
    assert [u["name"] for u in http.get(f"{API_PREFIX}/users", headers=auth(ann)).json()] == [
        "ann"]


def test_the_trail_records_refusals_for_the_token_and_keeps_no_secret(
        http: TestClient, clock: Clock) -> None:
    bob = user_with_token(http, "bob", "viewer")
    bob_id = bob.split(".")[1]
    wrong = f"ferry.{bob_id}.{'x' * 43}"
    assert http.delete(f"{API_PREFIX}/vms/web1", headers=auth(wrong)).status_code == 401
    assert http.delete(f"{API_PREFIX}/vms/web1").status_code == 401
    clock.now += 3600
    made = http.post(f"{API_PREFIX}/tokens", json={"label": "ci"}, headers=auth(bob)).json()
    rows = audit(http)
    by_action = [(r["user"], r["action"], r["target"], r["status"], r["token_id"])
                 for r in rows]
    assert by_action == [
        ("admin", "user.add", "bob", 201, rows[0]["token_id"]),
        ("admin", "token.create", "bob", 201, rows[0]["token_id"]),
        ("anonymous", "vm.delete", "web1", 401, bob_id),
        ("anonymous", "vm.delete", "web1", 401, None),
        ("bob", "token.create", "bob", 201, bob_id),
    ]
    assert rows[-1]["outcome"] == f"token {made['id']}"
    text = http.get(f"{API_PREFIX}/audit", headers=ADMIN).text
    for secret in (bob, made["token"], ADMIN_TOKEN):
        assert secret not in text
    assert [r["action"] for r in audit(http, since=clock.now - 60)] == ["token.create"]
    assert [r["status"] for r in audit(http, user="anonymous")] == [401, 401]


def test_the_install_token_becomes_the_first_admins_and_is_not_adopted_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: FakeWorld) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "token").write_text("a-token-from-before-users\n")
    monkeypatch.setenv("FERRY_HOME", str(home))
    monkeypatch.delenv("FERRY_TOKEN", raising=False)
    # The database of a ferry from before users: it has hosts, and no user.
    old = tmp_path / "ferry-2201e3d.db"
    old.write_bytes((Path(__file__).parent.parent / "fixtures" / "ferry-2201e3d.db")
                    .read_bytes())
    store = Store(f"sqlite:///{old}")
    accounts = open_accounts(store)
    [admin] = accounts.users()
    assert (admin.name, admin.role.value) == ("admin", "admin")
    principal = accounts.authenticate("a-token-from-before-users")
    assert principal.user == "admin"
    [token] = accounts.tokens("admin")
    assert token.expires_at - token.created_at == FILE_TOKEN_DAYS * DAY_S
    # A server started again with another file adopts nothing: admin exists.
    (home / "token").write_text("another-token\n")
    again = open_accounts(store)
    assert [t.id for t in again.tokens()] == [token.id]
    store.close()


def test_a_new_install_writes_a_token_file_that_is_the_admins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FERRY_TOKEN", raising=False)
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    accounts = open_accounts(store)
    written = config.read_token()
    assert written and (tmp_path / "home" / "token").stat().st_mode & 0o077 == 0
    assert accounts.authenticate(written).user == "admin"
    store.close()

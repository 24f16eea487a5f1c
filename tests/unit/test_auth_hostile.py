"""Hostile requests at the API's door: tokens and user names that must get nothing.

Each one is refused with ferry's error envelope (401 for a token that proves
nobody, 403 for a real token outside its role, 422 naming the field for a user
name outside the safe pattern), and leaves the users, tokens and hosts as they
were.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fastapi.testclient import TestClient
from test_api import FakeService

from ferry.api.app import API_PREFIX, create_app
from ferry.auth.accounts import Accounts
from ferry.auth.tokens import DAY_S, DEFAULT_DAYS

ADMIN_TOKEN = "install-token-of-the-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(tmp_path: Path, clock: Clock) -> Accounts:
    return admin_accounts(tmp_path, ADMIN_TOKEN, clock)


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def http(service: FakeService, accounts: Accounts) -> Iterator[TestClient]:
    with TestClient(create_app(service, accounts)) as http:
        yield http


def token_for(http: TestClient, name: str, role: str) -> str:
    http.post(f"{API_PREFIX}/users", json={"name": name, "role": role}, headers=ADMIN)
    token: str = http.post(f"{API_PREFIX}/tokens", json={"user": name},
                           headers=ADMIN).json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def users(http: TestClient) -> list[str]:
    return [u["name"] for u in http.get(f"{API_PREFIX}/users", headers=ADMIN).json()]


def refused_401(resp: object) -> str:
    assert getattr(resp, "status_code", None) == 401, getattr(resp, "text", resp)
    error = resp.json()["error"]  # type: ignore[attr-defined]
    assert error["exit_code"] == 3
    message: str = error["message"]
    return message


def test_a_viewers_token_on_an_admins_route_changes_nothing(
        http: TestClient, service: FakeService) -> None:
    viewer = token_for(http, "vic", "viewer")
    resp = http.delete(f"{API_PREFIX}/hosts/kvm1", headers=bearer(viewer))
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == (
        "user vic has role viewer; removing a host needs role admin")
    assert ("remove_host", "kvm1") not in service.calls


def test_an_expired_token(http: TestClient, clock: Clock) -> None:
    token = token_for(http, "vic", "viewer")
    clock.now += DEFAULT_DAYS * DAY_S
    assert refused_401(http.get(f"{API_PREFIX}/hosts", headers=bearer(token))).endswith(
        "is expired")


def test_a_revoked_token(http: TestClient) -> None:
    token = token_for(http, "vic", "operator")
    token_id = token.split(".")[1]
    assert http.delete(f"{API_PREFIX}/tokens/{token_id}", headers=ADMIN).status_code == 200
    assert refused_401(http.get(f"{API_PREFIX}/hosts", headers=bearer(token))).endswith(
        "is revoked")


def test_no_token(http: TestClient) -> None:
    assert "missing API token" in refused_401(http.post(f"{API_PREFIX}/users",
                                                        json={"name": "x", "role": "admin"}))
    assert users(http) == ["admin"]


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", f"bearer  {ADMIN_TOKEN} extra", f"Basic {ADMIN_TOKEN}",
    f"Token {ADMIN_TOKEN}", ADMIN_TOKEN, f"Bearer {ADMIN_TOKEN}x", f"Bearer x{ADMIN_TOKEN}",
])
def test_a_malformed_authorization_header(http: TestClient, header: str) -> None:
    refused_401(http.get(f"{API_PREFIX}/hosts", headers={"Authorization": header}))


def test_a_token_with_a_nul_byte(http: TestClient) -> None:
    token = token_for(http, "vic", "admin")
    for bad in (token + "\x00", token[:20] + "\x00" + token[20:], "\x00" + ADMIN_TOKEN):
        assert refused_401(http.get(f"{API_PREFIX}/hosts", headers=bearer(bad))) == (
            "invalid API token")


def test_a_4kb_token_is_refused_unhashed_and_not_recorded(http: TestClient) -> None:
    huge = "ferry." + "a" * 4096
    refused_401(http.post(f"{API_PREFIX}/users", json={"name": "x", "role": "admin"},
                          headers=bearer(huge)))
    [row] = [r for r in http.get(f"{API_PREFIX}/audit", headers=ADMIN).json()
             if r["status"] == 401]
    assert row["user"] == "anonymous" and row["token_id"] is None
    assert "aaaa" not in str(row)


def test_another_users_token_id_with_a_wrong_secret(http: TestClient) -> None:
    token = token_for(http, "ann", "admin")
    token_id = token.split(".")[1]
    forged = f"ferry.{token_id}.{'A' * 43}"
    assert refused_401(http.post(f"{API_PREFIX}/users", json={"name": "mal", "role": "admin"},
                                 headers=bearer(forged))) == "invalid API token"
    assert users(http) == ["admin", "ann"]
    row = http.get(f"{API_PREFIX}/audit", headers=ADMIN).json()[-1]
    assert (row["user"], row["token_id"], row["status"]) == ("anonymous", token_id, 401)


@pytest.mark.parametrize("name", [
    "bob'; DROP TABLE users; --", 'bob" OR "1"="1', "a" * 4096, "\u0430dmin", "Admin",
    "admin\n", " admin", "../admin", "",
])
def test_a_user_name_outside_the_safe_pattern_is_422_naming_the_field(
        http: TestClient, name: str) -> None:
    resp = http.post(f"{API_PREFIX}/users", json={"name": name, "role": "admin"},
                     headers=ADMIN)
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    assert message.startswith("invalid user name") and "lowercase letters" in message
    assert len(message) < 300  # a 4 KB name is not echoed whole
    assert users(http) == ["admin"]


def test_the_audit_trails_own_name_for_nobody_is_no_users_name(http: TestClient) -> None:
    resp = http.post(f"{API_PREFIX}/users", json={"name": "anonymous", "role": "viewer"},
                     headers=ADMIN)
    assert resp.status_code == 422 and "reserved" in resp.json()["error"]["message"]


def test_a_viewer_cannot_make_or_revoke_the_admins_tokens(http: TestClient) -> None:
    viewer = token_for(http, "vic", "viewer")
    made = http.post(f"{API_PREFIX}/tokens", json={"user": "admin"}, headers=bearer(viewer))
    assert made.status_code == 403
    assert made.json()["error"]["message"] == (
        "user vic has role viewer; creating a token of another user needs role admin")
    [admin_token] = http.get(f"{API_PREFIX}/tokens", params={"user": "admin"},
                             headers=ADMIN).json()
    resp = http.delete(f"{API_PREFIX}/tokens/{admin_token['id']}", headers=bearer(viewer))
    assert resp.status_code == 403
    assert http.get(f"{API_PREFIX}/hosts", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("body", [
    {"label": "line\nbreak"}, {"label": "\x1b[31mred"}, {"label": "x" * 101},
    {"expires_days": 0}, {"expires_days": 366}, {"expires_days": -1},
])
def test_a_token_request_out_of_bounds_is_422(http: TestClient, body: dict[str, object]
                                              ) -> None:
    resp = http.post(f"{API_PREFIX}/tokens", json=body, headers=ADMIN)
    assert resp.status_code == 422, resp.text
    assert len(http.get(f"{API_PREFIX}/tokens", headers=ADMIN).json()) == 1

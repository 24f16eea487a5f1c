"""``ferry user``, ``ferry token`` and ``ferry audit`` end to end through the real API app."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fastapi.testclient import TestClient
from test_api import FakeService

from ferry.api.app import create_app
from ferry.cli import main as cli
from ferry.cli.accounts import parse_since
from ferry.cli.client import FerryClient
from ferry.errors import Forbidden

ADMIN_TOKEN = "cli-admin-token"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(FakeService(), admin_accounts(tmp_path, ADMIN_TOKEN))) as http:
        yield http


def run(http: TestClient, capsys: pytest.CaptureFixture[str], *argv: str,
        token: str = ADMIN_TOKEN) -> tuple[int, str, str]:
    code = cli.main(list(argv), client=FerryClient(http=http, token=token))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_are_added_listed_and_removed_but_not_the_last_admin(
        http: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(http, capsys, "user", "add", "bob", "--role", "operator")
    assert code == 0 and "bob" in out and "operator" in out
    code, out, _ = run(http, capsys, "user", "list")
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["admin", "admin"], ["bob", "operator"]]
    code, _, err = run(http, capsys, "user", "remove", "admin")
    assert code == 2 and "last admin" in err
    code, out, _ = run(http, capsys, "user", "remove", "bob")
    assert code == 0 and "removed user bob" in out
    code, _, err = run(http, capsys, "user", "add", "Bob", "--role", "viewer")
    assert code == 2 and "invalid user name 'Bob'" in err


def test_a_token_is_printed_once_and_listed_without_it_then_revoked(
        http: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    run(http, capsys, "user", "add", "bob", "--role", "viewer")
    code, out, err = run(http, capsys, "token", "create", "--user", "bob", "--label",
                         "laptop", "--expires", "30")
    assert code == 0 and "shown only now" in err
    secret = out.strip()
    token_id = secret.split(".")[1]
    code, out, _ = run(http, capsys, "token", "list", token=secret)
    assert code == 0 and token_id in out and "laptop" in out and "active" in out
    assert secret.split(".")[2] not in out
    code, out, _ = run(http, capsys, "token", "list", "--user", "admin", token=secret)
    assert code == Forbidden.exit_code
    code, out, _ = run(http, capsys, "token", "revoke", token_id, token=secret)
    assert code == 0 and "revoked" in out
    code, _, err = run(http, capsys, "vm", "list", token=secret)
    assert code == 3 and f"API token {token_id} is revoked" in err
    code, out, _ = run(http, capsys, "token", "list", "--user", "bob")
    assert "revoked" in out


def test_a_viewers_migrate_exits_with_the_refusals_code_naming_the_role(
        http: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    run(http, capsys, "user", "add", "vic", "--role", "viewer")
    _, secret, _ = run(http, capsys, "token", "create", "--user", "vic")
    code, _, err = run(http, capsys, "migrate", "web1", "--host", "kvm2",
                       token=secret.strip())
    assert code == Forbidden.exit_code == 9
    assert "user vic has role viewer; starting a migration needs role operator" in err
    code, out, _ = run(http, capsys, "audit", "--user", "vic", "--since", "1h")
    assert code == 0
    [row] = out.splitlines()[1:]
    assert "migration.start" in row and "web1" in row and "403" in row
    code, _, err = run(http, capsys, "audit", token=secret.strip())
    assert code == 9 and "reading the audit trail needs role admin" in err


def test_since_reads_a_time_ago_or_an_iso_time() -> None:
    assert parse_since("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_since("2d", now=200_000.0) == 200_000.0 - 2 * 86400
    assert parse_since("2026-12-01T09:00:00+00:00") == datetime.fromisoformat(
        "2026-12-01T09:00:00+00:00").timestamp()
    with pytest.raises(argparse.ArgumentTypeError, match="neither a time ago"):
        parse_since("yesterday")

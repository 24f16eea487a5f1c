"""Roles through a real ``ferry serve`` and the real ``ferry`` command, on real hosts.

A viewer's move is refused (the refusal's exit code) and libvirt shows the VM
where it was; an operator's move runs, and the audit trail and the job name
the operator; a revoked token stops working at its very next request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LabEnv
from served import ServedFerry, ServeFactory, serve_ferry, where_it_runs

from ferry.errors import Forbidden, NotAuthenticated

pytestmark = pytest.mark.lab

__all__ = ["serve_ferry"]  # the fixture, imported for this module's tests

FERRY = Path(sys.executable).parent / "ferry"  # the command the package installs


@pytest.fixture
def served(serve_ferry: ServeFactory, tmp_path: Path) -> ServedFerry:
    # A database of its own, without users: its user admin holds the lab's token file.
    return serve_ferry("roles", f"sqlite:///{tmp_path / 'roles.db'}")


def ferry_as(server: ServedFerry, token: str | None, home: Path,
             *argv: str) -> subprocess.CompletedProcess[str]:
    """``ferry`` as a user on another machine runs it: FERRY_URL and FERRY_TOKEN, no token
    file (``token`` None: the server machine's own, FERRY_HOME/token, the admin's)."""
    env = dict(os.environ, FERRY_URL=server.url)
    env.pop("FERRY_TOKEN", None)
    if token is not None:
        env.update(FERRY_TOKEN=token, FERRY_HOME=str(home))
    else:
        env["FERRY_HOME"] = str(server.lab.ferry_home)
    return subprocess.run([str(FERRY), *argv], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_viewer_is_refused_an_operator_moves_and_a_revoked_token_stops(
        lab: LabEnv, make_vm: Callable[..., None], served: ServedFerry,
        tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"  # no token file here
    home.mkdir()

    def admin(*argv: str) -> subprocess.CompletedProcess[str]:
        result = ferry_as(served, None, home, *argv)
        assert result.returncode == 0, result.stderr
        return result

    admin("user", "add", "vic", "--role", "viewer")
    admin("user", "add", "olga", "--role", "operator")
    vic = admin("token", "create", "--user", "vic", "--label", "lab").stdout.strip()
    olga = admin("token", "create", "--user", "olga", "--label", "lab").stdout.strip()

    make_vm("rr1", "--host", "host1", "--datastore", "shared", "--memory", "256",
            "--disk", "0", "--workload", "heartbeat")
    served.client.refresh()
    assert where_it_runs(lab, "rr1") == {"host1": "running"}

    refused = ferry_as(served, vic, home, "migrate", "rr1", "--host", "host2")
    assert refused.returncode == Forbidden.exit_code, (refused.stdout, refused.stderr)
    assert "user vic has role viewer; starting a migration needs role operator" in (
        refused.stderr)
    assert where_it_runs(lab, "rr1") == {"host1": "running"}
    assert served.client.list_jobs() == []

    moved = ferry_as(served, olga, home, "migrate", "rr1", "--host", "host2")
    assert moved.returncode == 0, (moved.stdout, moved.stderr)
    assert where_it_runs(lab, "rr1") == {"host2": "running"}
    [job] = served.client.list_jobs()
    assert job.requested_by == "olga" and job.state == "succeeded"
    shown = ferry_as(served, olga, home, "job", "show", job.id)
    assert "requested by   olga" in shown.stdout

    trail = admin("audit", "--since", "1h").stdout.splitlines()[1:]
    starts = [line for line in trail if "migration.start" in line]
    assert len(starts) == 2, trail
    assert " vic " in starts[0] and " 403 " in starts[0] and " rr1 " in starts[0]
    assert " olga " in starts[1] and " 202 " in starts[1] and f"job {job.id}" in starts[1]
    assert " 127.0.0.1 " in starts[1]

    olga_id = olga.split(".")[1]
    assert ferry_as(served, olga, home, "vm", "list").returncode == 0
    admin("token", "revoke", olga_id)
    after = ferry_as(served, olga, home, "vm", "list")
    assert after.returncode == NotAuthenticated.exit_code
    assert f"API token {olga_id} is revoked" in after.stderr
    for secret in (vic, olga):
        assert secret not in admin("audit").stdout

"""One VM on fake hosts behind the real app: for API tests that need a move to run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fake_plane import plane_over, shared_world
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.engine.controlplane import ControlPlane
from ferry.model import VM, Disk, Interface, VMState

TOKEN = "api-world-install-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WEB1 = VM(name="web1", uuid="6f1c0b0e-0000-4000-8000-0000000000c1", host="host1",
          state=VMState.RUNNING, memory_kib=2**19, vcpus=1,
          disks=(Disk("vda", "disk", "file", "/srv/shared/web1.qcow2", "qcow2"),),
          interfaces=(Interface("52:54:00:00:00:c1", "network", "Production"),))


@contextlib.contextmanager
def served_world(tmp_path: Path) -> Iterator[tuple[ControlPlane, TestClient]]:
    """Hosts host1 and host2 sharing a datastore, WEB1 on host1, and the app over them
    whose user admin has TOKEN."""
    with plane_over(shared_world(2, WEB1), tmp_path) as plane:
        yield plane, TestClient(create_app(plane, admin_accounts(tmp_path, TOKEN)))


# The fixtures of a test module that imports them (and names them in its __all__).
@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ControlPlane, TestClient]]:
    with served_world(tmp_path) as both:
        yield both


@pytest.fixture
def plane(world: tuple[ControlPlane, TestClient]) -> ControlPlane:
    return world[0]


@pytest.fixture
def client(world: tuple[ControlPlane, TestClient]) -> TestClient:
    return world[1]

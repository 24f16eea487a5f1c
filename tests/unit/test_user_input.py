"""What users type, refused before it is stored or handed to a host, in a sentence.

The real control plane, REST API, client and CLI over fake hosts: a name
refused reads validate.name's sentence (never a regular expression), a host
URI or address carrying whitespace is refused and not stored, and a VM's
network must exist on its host before anything is created there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fake_plane import plane_over
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.cli.client import FerryClient
from ferry.cli.main import main
from ferry.engine.controlplane import ControlPlane
from ferry.lab import layout
from ferry.validate import NAME_PATTERN, NAME_RULE
from ferry.virt.fake import Backing, FakeHost, FakeWorld

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld()
    # The lab guest image on the shared datastore, as 'ferry lab up' leaves it.
    shared = Backing({layout.GUEST_KERNEL_VOLUME, layout.GUEST_INITRD_VOLUME})
    for i in (1, 2, 3):
        host = FakeHost(world, f"host{i}", f"uuid-{i}")
        host.add_pool("shared", "/srv/shared", shared)
        host.add_network("Production")
        host.add_network("Backup")
    return world


@pytest.fixture
def plane(world: FakeWorld, tmp_path: Path) -> Iterator[ControlPlane]:
    with plane_over(world, tmp_path, ("host1", "host2")) as plane:  # host3 answers, unregistered
        yield plane


@pytest.fixture
def http(plane: ControlPlane, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(plane, admin_accounts(tmp_path, TOKEN))) as http:
        yield http


@pytest.fixture
def cli(http: TestClient) -> FerryClient:
    return FerryClient(http=http, token=TOKEN)


def run(client: FerryClient, capsys: pytest.CaptureFixture[str],
        *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), client=client)
    out = capsys.readouterr()
    return code, out.out, out.err


def host_state(world: FakeWorld, name: str) -> tuple[object, ...]:
    """Everything a fake host holds that creating a VM could change."""
    host = world.host(name)
    return (dict(host.vms), {p: set(b.files) for p, (_, b) in host.pools.items()})


# ------------------------------------------------------- vm create --network


@pytest.mark.parametrize("network", ["Nope", "production", "Production\n"])
def test_vm_create_refuses_a_network_the_host_lacks(
    world: FakeWorld, cli: FerryClient, http: TestClient, capsys: pytest.CaptureFixture[str],
    network: str,
) -> None:
    before = host_state(world, "host1")
    for start in ([], ["--no-start"]):
        code, _, err = run(cli, capsys, "vm", "create", "lab1", "--host", "host1",
                           "--datastore", "shared", "--network", network, *start)
        assert code == 2, err
        assert f"host host1 has no network named {network!r}" in err
        assert "its networks: Backup, Production" in err
    resp = http.post("/api/v1/vms", headers=AUTH, json={
        "name": "lab1", "host": "host1", "datastore": "shared", "network": network})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "NotFound"
    assert host_state(world, "host1") == before  # no volume made, nothing defined


def test_vm_create_refuses_a_stopped_network_unless_not_started(
    world: FakeWorld, cli: FerryClient, capsys: pytest.CaptureFixture[str],
) -> None:
    host = world.host("host1")
    host.networks = [replace(n, active=n.name != "Backup") for n in host.networks]
    before = host_state(world, "host1")
    code, _, err = run(cli, capsys, "vm", "create", "lab1", "--host", "host1",
                       "--datastore", "shared", "--network", "Backup")
    assert code == 2 and "network 'Backup' on host host1 is not started" in err
    assert "virsh net-start Backup" in err
    assert host_state(world, "host1") == before


# ------------------------------------------------------------------- names

BAD_NAMES = [
    (("vm", "create", "bad name", "--host", "host1", "--datastore", "shared"), "VM", "bad name"),
    (("vm", "show", "web1;"), "VM", "web1;"),
    (("host", "add", "host 3", "qemu+tls://host3/system"), "host", "host 3"),
    (("host", "set", "host:2", "--migration", "off"), "host", "host:2"),
    (("cluster", "create", "prod*"), "cluster", "prod*"),
    (("cluster", "add-host", "prod", "h@st"), "host", "h@st"),
    (("cluster", "evc", "enable", "prod", "--mode", "<cpu/>"), "CPU model", "<cpu/>"),
]


@pytest.mark.parametrize(("argv", "kind", "value"), BAD_NAMES)
def test_a_refused_name_reads_validates_sentence_not_a_regex(
    cli: FerryClient, capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...], kind: str, value: str,
) -> None:
    code, _, err = run(cli, capsys, *argv)
    assert code == 2, err
    assert f"invalid {kind} name {value!r}: {NAME_RULE}" in err
    assert "[A-Za-z" not in err and "pattern" not in err


def test_a_name_with_a_trailing_newline_is_refused_in_the_api_body(http: TestClient) -> None:
    resp = http.post("/api/v1/clusters", headers=AUTH, json={"name": "prod\n"})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["message"] == f"invalid cluster name 'prod\\n': {NAME_RULE}"
    assert error["exit_code"] == 2
    assert http.get("/api/v1/clusters", headers=AUTH).json() == []


def test_openapi_still_publishes_the_name_pattern(http: TestClient) -> None:
    schema = http.get("/openapi.json").json()
    name = schema["components"]["schemas"]["VMCreate"]["properties"]["name"]
    assert name["pattern"] == NAME_PATTERN and name["description"] == NAME_RULE


# --------------------------------------------------------- host URI, address


@pytest.mark.parametrize("uri", [
    "qemu+tls://host3/system\n", " qemu+tls://host3/system", "qemu+tls://host3/system\r\n",
    "qemu+tls://host3/sys\ttem", "qemu+tls://ho\nst3/system", "qemu+tls://host3/system\x00",
])
def test_host_uri_with_whitespace_or_control_characters_is_refused_not_stored(
    plane: ControlPlane, cli: FerryClient, http: TestClient,
    capsys: pytest.CaptureFixture[str], uri: str,
) -> None:
    code, _, err = run(cli, capsys, "host", "add", "host3", uri)
    assert code == 2, err
    assert f"host URI {uri!r} contains whitespace or a control character" in err
    resp = http.post("/api/v1/hosts", headers=AUTH, json={"name": "host3", "uri": uri})
    assert resp.status_code == 400 and repr(uri) in resp.json()["error"]["message"]
    assert [h.name for h in plane.list_hosts()] == ["host1", "host2"]


def test_host_uri_naming_no_host_name_is_refused(
    plane: ControlPlane, cli: FerryClient, capsys: pytest.CaptureFixture[str],
) -> None:
    uri = "qemu+tls://host%0a3/system"  # its host would be the default migration address
    code, _, err = run(cli, capsys, "host", "add", "host3", uri)
    assert code == 2, err
    assert f"host URI {uri!r} names host 'host%0a3', which is not a host name" in err
    assert [h.name for h in plane.list_hosts()] == ["host1", "host2"]


@pytest.mark.parametrize(("argv", "what"), [
    (("host", "add", "host3", "qemu+tls://host3/system", "--migration-address",
      "198.18.0.13\n"), "invalid migration address '198.18.0.13\\n'"),
    (("host", "add", "host3", "qemu+tls://host3/system", "--migration-address",
      "198.18.0.13/24"), "invalid migration address '198.18.0.13/24'"),
])
def test_migration_address_given_at_add_is_judged_not_stored(
    plane: ControlPlane, cli: FerryClient, capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...], what: str,
) -> None:
    code, _, err = run(cli, capsys, *argv)
    assert code == 2, err
    assert what in err
    assert [h.name for h in plane.list_hosts()] == ["host1", "host2"]


@pytest.mark.parametrize(("option", "value", "what"), [
    ("--migration-address", "198.18.0.2\n", "invalid migration address '198.18.0.2\\n'"),
    ("--migration-interface", "eth1\n", "invalid interface name 'eth1\\n'"),
])
def test_host_set_refuses_a_trailing_newline(
    plane: ControlPlane, cli: FerryClient, capsys: pytest.CaptureFixture[str],
    option: str, value: str, what: str,
) -> None:
    before = plane.list_hosts()
    code, _, err = run(cli, capsys, "host", "set", "host2", option, value)
    assert code == 2, err
    assert what in err
    assert plane.list_hosts() == before

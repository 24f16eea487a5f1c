"""Hostile input through the REST API, one case at a time, each refused in words.

The real control plane and API over fake hosts. Every case asserts a 4xx whose
message names what was wrong, and that nothing changed: not the VMs and volumes
on any host, not a record in the store (every table of its database).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from auth_support import admin_accounts
from fake_plane import plane_over
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.api.limits import MAX_BODY_BYTES
from ferry.errors import InputError
from ferry.lab import layout
from ferry.model import MAX_MEMORY_LIMIT_MIB
from ferry.service import HostSettingsUpdate
from ferry.validate import NAME_RULE
from ferry.virt.fake import Backing, FakeHost, FakeWorld

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Api:
    world: FakeWorld
    http: TestClient
    database: Path

    def state(self) -> dict[str, Any]:
        """Every VM and volume on every host, and every record in the store."""
        state: dict[str, Any] = {}
        for name, host in self.world.hosts.items():
            state[f"{name}/vms"] = dict(host.vms)
            state[f"{name}/volumes"] = {p: set(b.files) for p, (_, b) in host.pools.items()}
        with sqlite3.connect(self.database) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                # The server's heartbeat and a token's last use move with every request;
                # the audit trail records refused requests too.
                if table in ("servers", "audit"):
                    continue
                rows = db.execute(f'SELECT * FROM "{table}"')
                names = [c[0] for c in rows.description]
                state[table] = sorted(repr({k: v for k, v in zip(names, row, strict=True)
                                            if k != "last_used_at"}) for row in rows)
        return state

    def refused(self, method: str, path: str, status: int, *named: str, **kwargs: Any) -> str:
        """Send a request that must be refused with ``status``; return its message."""
        before = self.state()
        headers = {**AUTH, **kwargs.pop("headers", {})}
        resp = self.http.request(method, f"/api/v1{path}", headers=headers, **kwargs)
        assert resp.status_code == status, resp.text
        message = str(resp.json()["error"]["message"])
        for text in named:
            assert text in message, message
        assert self.state() == before, f"{method} {path} changed something"
        return message


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    world = FakeWorld()
    shared = Backing({layout.GUEST_KERNEL_VOLUME, layout.GUEST_INITRD_VOLUME})
    for i in (1, 2, 3):
        host = FakeHost(world, f"host{i}", f"uuid-{i}")
        host.add_pool("shared", "/srv/shared", shared)
        host.add_pool("fast", "/srv/fast", Backing(set()))
        host.add_network("Production")
    with plane_over(world, tmp_path, ("host1", "host2")) as plane, \
            TestClient(create_app(plane, admin_accounts(tmp_path, TOKEN))) as http:
        made = http.post("/api/v1/vms", headers=AUTH, json={
            "name": "web1", "host": "host1", "datastore": "shared"})
        assert made.status_code == 201, made.text
        assert http.post("/api/v1/clusters", headers=AUTH,
                         json={"name": "prod"}).status_code == 201
        yield Api(world, http, tmp_path / "ferry.db")


def vm(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "host": "host1", "datastore": "shared", **fields}


# ------------------------------------------------------------ path traversal


@pytest.mark.parametrize("name", ["../../etc/passwd", "%2e%2e%2f", "..", "web1/../../x"])
def test_a_vm_name_that_walks_a_path_is_refused(api: Api, name: str) -> None:
    api.refused("POST", "/vms", 422, f"invalid VM name {name!r}", NAME_RULE, json=vm(name))


@pytest.mark.parametrize("path", ["/vms/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                  "/vms/..%2F..%2Fetc%2Fpasswd"])
def test_an_encoded_traversal_in_the_url_names_no_path_and_deletes_nothing(
        api: Api, path: str) -> None:
    api.refused("DELETE", path, 404, "no API path '/api/v1/vms/../../etc/passwd'")


def test_a_datastore_that_walks_a_path_is_not_a_datastore(api: Api) -> None:
    api.refused("POST", "/vms", 404, "host host1 has no datastore named ../../etc",
                json=vm("lab2", datastore="../../etc"))
    api.refused("POST", "/migrations", 404, "host host2 has no datastore named ../../etc/passwd",
                json={"vm": "web1", "host": "host2", "datastore": "../../etc/passwd"})


def test_a_disk_that_walks_a_path_is_not_a_disk_of_the_vm(api: Api) -> None:
    resp_message = api.refused("POST", "/migrations", 409, "moving the disks of web1",
                               json={"vm": "web1", "datastore": "fast",
                                     "disks": ["../../etc/passwd"]})
    assert "refused" in resp_message
    findings = api.http.post("/api/v1/checks", headers=AUTH, json={
        "vm": "web1", "datastore": "fast", "disks": ["../../etc/passwd"]}).json()["findings"]
    assert any("../../etc/passwd" in f["message"] and f["status"] == "error" for f in findings)


def test_a_disk_target_the_vm_lacks_is_refused_naming_it(api: Api) -> None:
    api.refused("POST", "/migrations", 409, "refused",
                json={"vm": "web1", "datastore": "fast", "disks": ["vdz"]})
    findings = api.http.post("/api/v1/checks", headers=AUTH, json={
        "vm": "web1", "datastore": "fast", "disks": ["vdz"]}).json()["findings"]
    assert any("vdz" in f["message"] and f["status"] == "error" for f in findings)


# ------------------------------------------------------ NUL, length, Unicode


def test_a_nul_byte_in_a_name_is_refused(api: Api) -> None:
    api.refused("POST", "/vms", 422, "invalid VM name 'web2\\x00'", json=vm("web2\x00"))


def test_a_nul_byte_in_a_host_uri_is_refused(api: Api) -> None:
    api.refused("POST", "/hosts", 400, "contains whitespace or a control character",
                json={"name": "host3", "uri": "qemu+tls://host3/system\x00"})


def test_a_nul_byte_in_a_job_id_is_shown_not_swallowed(api: Api) -> None:
    api.refused("POST", "/jobs/%00/cancel", 404, "no job with id '\\x00'")


def test_a_name_of_4_kb_is_refused(api: Api) -> None:
    api.refused("POST", "/clusters", 422, "invalid cluster name", NAME_RULE,
                json={"name": "a" * 4096})


def test_a_cyrillic_look_alike_of_a_registered_host_is_refused(api: Api) -> None:
    look_alike = "host\u0031".replace("o", "\u043e")  # Cyrillic 'о' in "host1"
    api.refused("POST", "/hosts", 422, f"invalid host name {look_alike!r}",
                json={"name": look_alike, "uri": "qemu+tls://host3/system"})
    api.refused("POST", "/clusters/prod/hosts", 422, f"invalid host name {look_alike!r}",
                json={"host": look_alike})


def test_a_cyrillic_a_in_a_vm_name_is_refused(api: Api) -> None:
    api.refused("POST", "/vms", 422, "invalid VM name 'web\u0430'", json=vm("web\u0430"))


# --------------------------------------------------- shell metacharacters


@pytest.mark.parametrize("name", ["$(reboot)", ";rm -rf /", "`reboot`", "web1|nc x 1",
                                  "web1&&halt"])
def test_shell_metacharacters_in_a_name_are_refused(api: Api, name: str) -> None:
    api.refused("POST", "/vms", 422, f"invalid VM name {name!r}", json=vm(name))


def test_shell_metacharacters_in_host_settings_are_refused(api: Api) -> None:
    api.refused("PATCH", "/hosts/host1", 400, "invalid migration address 'a|nc evil 1'",
                json={"migration_address": "a|nc evil 1"})
    api.refused("PATCH", "/hosts/host1", 400, "invalid interface name 'eth0;reboot'",
                json={"migration_interface": "eth0;reboot"})


# ------------------------------------------------------ numbers out of range


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("memory_mib", -1, "greater than or equal to 64"),
    ("memory_mib", 2**63, "less than or equal to 65536"),
    ("vcpus", 0, "greater than or equal to 1"),
    ("vcpus", 2**63, "less than or equal to 64"),
    ("disk_mib", -256, "greater than or equal to 0"),
])
def test_vm_sizes_out_of_range_are_refused(api: Api, field: str, value: int, rule: str) -> None:
    api.refused("POST", "/vms", 422, f"{field}: Input should be {rule}",
                json=vm("lab2", **{field: value}))


@pytest.mark.parametrize(("value", "rule"), [(0, "greater than or equal to 1"),
                                             (-1, "greater than or equal to 1"),
                                             (2**63, "less than or equal to 64")])
def test_max_migrations_out_of_range_is_refused(api: Api, value: int, rule: str) -> None:
    api.refused("PATCH", "/hosts/host1", 422, f"max_migrations: Input should be {rule}",
                json={"max_migrations": value})


def test_a_negative_memory_limit_is_refused(api: Api) -> None:
    api.refused("PATCH", "/hosts/host1", 422, "memory_limit_mib: Input should be greater",
                json={"memory_limit_mib": -5})


def test_a_memory_limit_beyond_what_the_store_holds_is_refused(api: Api) -> None:
    # Found by the schema fuzzer: 2**63 reached SQLite and came back as a 500.
    api.refused("PATCH", "/hosts/host1", 422,
                f"memory_limit_mib: Input should be less than or equal to {MAX_MEMORY_LIMIT_MIB}",
                json={"memory_limit_mib": 2**63})
    with pytest.raises(InputError, match="out of range"):
        HostSettingsUpdate(memory_limit_mib=MAX_MEMORY_LIMIT_MIB + 1).validated()


@pytest.mark.parametrize("limit", ["-1", "0", str(2**63), "1e3", "ten"])
def test_a_job_list_limit_out_of_range_is_refused(api: Api, limit: str) -> None:
    api.refused("GET", f"/jobs?limit={limit}", 422, "limit: ")


# ------------------------------------------------------------- duplicates


def test_a_host_name_already_registered_is_refused(api: Api) -> None:
    api.refused("POST", "/hosts", 400, "host host1 is already registered",
                json={"name": "host1", "uri": "qemu+tls://host3/system"})


def test_the_same_host_under_a_second_name_is_refused(api: Api) -> None:
    api.refused("POST", "/hosts", 400, "is host host1 again (same host UUID uuid-1)",
                json={"name": "host3", "uri": "qemu+tls://host1/system"})


def test_a_vm_name_that_exists_is_refused(api: Api) -> None:
    api.refused("POST", "/vms", 400, "a VM named web1 already exists",
                json=vm("web1", host="host2"))


def test_a_cluster_name_that_exists_is_refused(api: Api) -> None:
    api.refused("POST", "/clusters", 400, "cluster prod already exists", json={"name": "prod"})


# ------------------------------------------------------------- host URIs


@pytest.mark.parametrize(("uri", "named"), [
    ("qemu+tls://host3/system?pkipath=/etc/pki", "must not carry parameters"),
    ("qemu+tls://host3/system#x", "must not carry parameters"),
    ("qemu+tcp://host3/system", "unauthenticated qemu+tcp and local URIs are refused"),
    ("qemu:///system", "unsupported host URI"),
    ("qemu+tls://host3/session", "must end in /system"),
    ("qemu+tls://$(reboot)/system", "which is not a host name or IP address"),
])
def test_a_host_uri_ferry_must_not_use_is_refused(api: Api, uri: str, named: str) -> None:
    api.refused("POST", "/hosts", 400, repr(uri), named, json={"name": "host3", "uri": uri})


# --------------------------------------------------------------- XML, types


def test_raw_xml_in_a_name_field_is_refused(api: Api) -> None:
    xml = "<domain type='kvm'><name>x</name></domain>"
    api.refused("POST", "/vms", 422, f"invalid VM name {xml!r}", json=vm(xml))
    api.refused("PUT", "/clusters/prod/evc", 422, "invalid CPU model name '<cpu/>'",
                json={"mode": "<cpu/>"})
    api.refused("POST", "/vms", 404, "no network named '</network><x>'",
                json=vm("lab2", network="</network><x>"))


@pytest.mark.parametrize(("body", "named"), [
    (vm("lab2", memory_mib="512"), "memory_mib: Input should be a valid integer"),
    (vm("lab2", start=0), "start: Input should be a valid boolean"),
    (vm("lab2", start="yes"), "start: Input should be a valid boolean"),
    (vm(123), "name: Input should be a valid string"),  # type: ignore[arg-type]
    (vm("lab2", vcpus=1.5), "vcpus: Input should be a valid integer"),
    (["web1"], "body: Input should be a valid dictionary"),
    (vm("lab2", memory=1024), "memory: Extra inputs are not permitted"),
])
def test_json_of_the_wrong_type_is_refused_naming_the_field(api: Api, body: Any,
                                                            named: str) -> None:
    api.refused("POST", "/vms", 422, named, json=body)


def test_a_body_not_sent_as_json_is_refused(api: Api) -> None:
    # `curl -d` sends a form; this was a 500 when the error's raw bytes reached the encoder.
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        api.refused("POST", "/clusters", 422, "Content-Type: application/json",
                    content=b'{"name": "qa"}', headers={"Content-Type": content_type})


def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    api.refused("POST", "/clusters", 422, "the body is not valid JSON",
                content=b'{"name": "qa"', headers={"Content-Type": "application/json"})


def test_an_over_large_body_is_refused_before_it_is_read(api: Api) -> None:
    body = b'{"name": "' + b"a" * MAX_BODY_BYTES + b'"}'
    api.refused("POST", "/clusters", 413, f"larger than the API takes ({MAX_BODY_BYTES} bytes)",
                content=body, headers={"Content-Type": "application/json"})


# --------------------------------------------------------------- moves


def test_a_migration_to_the_vms_own_host_is_refused(api: Api) -> None:
    api.refused("POST", "/migrations", 400, "VM web1 already runs on host1",
                json={"vm": "web1", "host": "host1"})


def test_a_migration_of_a_vm_named_by_a_path_is_refused(api: Api) -> None:
    api.refused("POST", "/migrations", 404, "no VM named ../../etc/passwd",
                json={"vm": "../../etc/passwd", "host": "host2"})


def test_a_refresh_of_a_host_named_by_a_path_is_refused(api: Api) -> None:
    api.refused("POST", "/refresh?host=..%2Fx", 404, "no host named ../x")

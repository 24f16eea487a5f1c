"""The REST API against an in-memory FerryService: auth, shapes, error envelope."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from auth_support import admin_accounts
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.checks.finding import Finding, Status
from ferry.errors import InputError, NotFound, RefusedError
from ferry.job import Job, JobEvent, JobState
from ferry.model import (
    VM,
    Disk,
    EvcHostView,
    EvcMode,
    EvcReport,
    Host,
    Interface,
    Inventory,
    Network,
    Pool,
    VMState,
)
from ferry.service import DatastoreView, FerryService, VMCreateRequest

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

HOST = Host(name="kvm1", uri="qemu+tls://kvm1/system", connected=True, cpus=8,
            memory_mib=16384, free_memory_mib=8192, libvirt_version="10.0.0")
VM1 = VM(
    name="web1", uuid="1111", host="kvm1", state=VMState.RUNNING, memory_kib=524288, vcpus=1,
    disks=(Disk("vda", "disk", "file", "/pools/shared/web1.qcow2", "qcow2"),),
    interfaces=(Interface("52:54:00:00:00:01", "network", "Production"),),
)
POOLS = (
    Pool("kvm1", "shared", "netfs", "/pools/shared", True, 10 << 30, 4 << 30, 6 << 30, "shared"),
    Pool("kvm2", "shared", "netfs", "/pools/shared", True, 10 << 30, 4 << 30, 6 << 30, "shared"),
)
NETWORK = Network("kvm1", "Production", "virbr1", "nat", True)
REFUSAL = [
    Finding("cpu.pinned", Status.ERROR, "web2 is pinned to host CPUs 0-1",
            "remove the CPU affinity", {"vm": "web2"}),
    Finding("network.missing", Status.ERROR, "network Production is missing on kvm2",
            "define network Production on kvm2", {"network": "Production", "host": "kvm2"}),
]

EVC_REPORT = EvcReport("prod", EvcMode("auto", "Westmere", "Intel", "<cpu/>", ("aes", "sse2"), 1.0),
                       (EvcHostView("kvm1", "SandyBridge", "Intel", hidden=("avx",)),))


def make_job(state: JobState = JobState.QUEUED, **kw: Any) -> Job:
    return Job(id="j1", kind="migrate", vm="web1", source_host="kvm1", dest_host="kvm2",
               state=state, phase="requested", created_at=time.time(), **kw)


class FakeService(FerryService):
    """Fixed answers; 'web2' is refused, unknown names are NotFound."""

    def __init__(self) -> None:
        self.created: list[VMCreateRequest] = []
        self.calls: list[tuple[str, Any]] = []

    def add_host(self, name: str, uri: str, migration_address: str | None = None) -> Host:
        if name == HOST.name:
            raise InputError(f"host {name} is already registered")
        return Host(name=name, uri=uri, migration_address=migration_address)

    def remove_host(self, name: str) -> None:
        if name != HOST.name:
            raise NotFound(f"no host named {name!r}")
        self.calls.append(("remove_host", name))

    def list_hosts(self) -> list[Host]:
        return [HOST]

    def refresh(self, host: str | None = None) -> Inventory:
        self.calls.append(("refresh", host))
        return Inventory({HOST.name: HOST}, {VM1.name: VM1}, POOLS, (NETWORK,))

    def list_vms(self) -> list[VM]:
        return [VM1]

    def get_vm(self, name: str) -> VM:
        if name != VM1.name:
            raise NotFound(f"no VM named {name!r}")
        return VM1

    def list_datastores(self) -> list[DatastoreView]:
        return [DatastoreView("shared", POOLS)]

    def list_networks(self) -> list[Network]:
        return [NETWORK]

    def create_vm(self, request: VMCreateRequest) -> VM:
        self.created.append(request)
        return VM(name=request.name, uuid="2222", host=request.host, state=VMState.RUNNING,
                  memory_kib=request.memory_mib * 1024, vcpus=request.vcpus)

    def power(self, vm: str, action: str) -> VM:
        self.calls.append(("power", (vm, action)))
        return self.get_vm(vm)

    def start_migration(self, vm: str, dest_host: str | None,
                        dest_datastore: str | None = None, disk_format: str = "same",
                        disks: tuple[str, ...] = (), cold: bool = False,
                        requested_by: str | None = None, policy: str | None = None,
                        bandwidth_mibps: int | None = None) -> Job:
        if vm == "web2":
            raise RefusedError(f"migration of {vm} to {dest_host} refused", REFUSAL)
        self.get_vm(vm)
        return make_job()

    def list_jobs(self, limit: int = 100) -> list[Job]:
        self.calls.append(("list_jobs", limit))
        return [make_job()]

    def get_job(self, job_id: str) -> Job:
        if job_id != "j1":
            raise NotFound(f"no job {job_id!r}")
        return make_job(JobState.RUNNING, events=(JobEvent(time.time(), "requested", "go"),))

    def cancel_job(self, job_id: str) -> Job:
        return make_job(JobState.CANCELLING)

    def enable_evc(self, cluster: str, mode: str) -> EvcReport:
        if mode == "Penryn":
            raise RefusedError(f"EVC mode Penryn on cluster {cluster} refused", [Finding(
                "evc.vm-beyond-mode", Status.ERROR, "VM web1 on kvm1 uses CPU features EVC "
                "mode Penryn hides: aes", "power off web1", {"vm": "web1", "features": "aes"})])
        self.calls.append(("enable_evc", (cluster, mode)))
        return EVC_REPORT

    def evc_report(self, cluster: str) -> EvcReport:
        return EVC_REPORT

    def disable_evc(self, cluster: str) -> EvcReport:
        return EvcReport(cluster, None)

    def close(self) -> None:
        pass


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def client(service: FakeService, tmp_path: Path) -> TestClient:
    return TestClient(create_app(service, admin_accounts(tmp_path, TOKEN)),
                      raise_server_exceptions=False)


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_every_endpoint_requires_the_token(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/api/v1/hosts"), ("GET", "/api/v1/vms/web1"),
                         ("POST", "/api/v1/migrations"), ("GET", "/api/v1/jobs")]:
        resp = client.request(method, path, headers=headers)
        assert resp.status_code == 401, path
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert resp.json()["error"]["exit_code"] == 3


def test_openapi_is_published(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/hosts", "/api/v1/migrations", "/api/v1/jobs/{job_id}/cancel"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_hosts_mirror_the_dataclass(client: TestClient) -> None:
    [host] = client.get("/api/v1/hosts", headers=AUTH).json()
    assert host["name"] == "kvm1" and host["connected"] is True and host["cpus"] == 8


def test_vm_includes_nested_objects_and_properties(client: TestClient) -> None:
    vm = client.get("/api/v1/vms/web1", headers=AUTH).json()
    assert vm["memory_mib"] == 512 and vm["state"] == "running"
    assert vm["disks"][0]["source"] == "/pools/shared/web1.qcow2"
    assert vm["interfaces"][0]["network"] == "Production"
    assert vm["affinity"]["pinned"] is False


def test_unknown_vm_is_404_naming_it(client: TestClient) -> None:
    resp = client.get("/api/v1/vms/ghost", headers=AUTH)
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["type"] == "NotFound" and "ghost" in err["message"] and err["exit_code"] == 2


def test_input_error_is_400(client: TestClient) -> None:
    resp = client.post("/api/v1/hosts", headers=AUTH, json={"name": "kvm1", "uri": "qemu:///x"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "InputError"


def test_add_and_remove_host(client: TestClient, service: FakeService) -> None:
    body = {"name": "kvm2", "uri": "qemu+tls://kvm2/system", "migration_address": "10.0.0.2"}
    resp = client.post("/api/v1/hosts", headers=AUTH, json=body)
    assert resp.status_code == 201 and resp.json()["migration_address"] == "10.0.0.2"
    assert client.delete("/api/v1/hosts/kvm1", headers=AUTH).status_code == 204
    assert ("remove_host", "kvm1") in service.calls


def test_refresh_passes_the_host(client: TestClient, service: FakeService) -> None:
    inv = client.post("/api/v1/refresh", headers=AUTH, params={"host": "kvm1"}).json()
    assert ("refresh", "kvm1") in service.calls
    assert inv["hosts"]["kvm1"]["name"] == "kvm1" and inv["vms"]["web1"]["host"] == "kvm1"


def test_datastores_and_networks(client: TestClient) -> None:
    [ds] = client.get("/api/v1/datastores", headers=AUTH).json()
    assert ds["shared"] is True and ds["hosts"] == ["kvm1", "kvm2"] and len(ds["pools"]) == 2
    [net] = client.get("/api/v1/networks", headers=AUTH).json()
    assert net["name"] == "Production" and net["internal_only"] is False


def test_create_vm_passes_every_field(client: TestClient, service: FakeService) -> None:
    body = {"name": "lab-1", "host": "kvm1", "datastore": "shared", "memory_mib": 1024,
            "vcpus": 2, "disk_format": "raw", "memory_workload_mib": 256, "start": False}
    resp = client.post("/api/v1/vms", headers=AUTH, json=body)
    assert resp.status_code == 201, resp.text
    [req] = service.created
    assert req == VMCreateRequest(name="lab-1", host="kvm1", datastore="shared",
                                  memory_mib=1024, vcpus=2, disk_format="raw",
                                  memory_workload_mib=256, start=False)


@pytest.mark.parametrize("override", [
    {"name": "-bad"}, {"name": "a/b"}, {"name": "x" * 65}, {"memory_mib": 32},
    {"memory_mib": 65537}, {"vcpus": 0}, {"vcpus": 65}, {"disk_mib": -1},
    {"disk_mib": 1048577}, {"disk_format": "vmdk"},
])
def test_create_vm_validation(client: TestClient, service: FakeService,
                              override: dict[str, Any]) -> None:
    body = {"name": "lab-1", "host": "kvm1", "datastore": "shared", **override}
    resp = client.post("/api/v1/vms", headers=AUTH, json=body)
    assert resp.status_code == 422
    data = resp.json()
    assert isinstance(data["detail"], list)  # FastAPI's own format is kept
    assert data["error"]["type"] == "ValidationError" and data["error"]["exit_code"] == 2
    assert next(iter(override)) in data["error"]["message"]
    assert service.created == []


def test_power_action_is_validated(client: TestClient, service: FakeService) -> None:
    bad = client.post("/api/v1/vms/web1/power", headers=AUTH, json={"action": "reboot"})
    assert bad.status_code == 422
    ok = client.post("/api/v1/vms/web1/power", headers=AUTH, json={"action": "force-off"})
    assert ok.status_code == 200 and ("power", ("web1", "force-off")) in service.calls


def test_migration_is_accepted_with_the_job(client: TestClient) -> None:
    resp = client.post("/api/v1/migrations", headers=AUTH, json={"vm": "web1", "host": "kvm2"})
    assert resp.status_code == 202
    job = resp.json()
    assert job["id"] == "j1" and job["state"] == "queued" and job["dest_host"] == "kvm2"


def test_refused_migration_is_409_with_findings(client: TestClient) -> None:
    resp = client.post("/api/v1/migrations", headers=AUTH, json={"vm": "web2", "host": "kvm2"})
    assert resp.status_code == 409
    err = resp.json()["error"]
    assert err["type"] == "RefusedError" and err["exit_code"] == 4
    assert [f["code"] for f in err["findings"]] == ["cpu.pinned", "network.missing"]
    assert err["findings"][1] == {
        "code": "network.missing", "status": "error",
        "message": "network Production is missing on kvm2",
        "remedy": "define network Production on kvm2",
        "objects": {"network": "Production", "host": "kvm2"},
    }


def test_evc_is_enabled_shown_and_refused_with_findings(client: TestClient,
                                                        service: FakeService) -> None:
    resp = client.put("/api/v1/clusters/prod/evc", headers=AUTH, json={"mode": "auto"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["mode"]["model"] == "Westmere" and body["mode"]["features"] == ["aes", "sse2"]
    assert body["hosts"] == [{"host": "kvm1", "model": "SandyBridge", "vendor": "Intel",
                              "hidden": ["avx"], "missing": [], "error": None}]
    assert service.calls[-1] == ("enable_evc", ("prod", "auto"))
    refused = client.put("/api/v1/clusters/prod/evc", headers=AUTH, json={"mode": "Penryn"})
    assert refused.status_code == 409
    assert refused.json()["error"]["findings"][0]["objects"]["vm"] == "web1"
    bad = client.put("/api/v1/clusters/prod/evc", headers=AUTH, json={"mode": "<cpu/>"})
    assert bad.status_code == 422 and "mode" in bad.text
    assert client.get("/api/v1/clusters/prod/evc", headers=AUTH).json()["mode"]["vendor"] == (
        "Intel")
    assert client.delete("/api/v1/clusters/prod/evc", headers=AUTH).json()["mode"] is None


def test_jobs(client: TestClient, service: FakeService) -> None:
    assert len(client.get("/api/v1/jobs", headers=AUTH, params={"limit": 5}).json()) == 1
    assert ("list_jobs", 5) in service.calls
    assert client.get("/api/v1/jobs", headers=AUTH, params={"limit": 0}).status_code == 422
    job = client.get("/api/v1/jobs/j1", headers=AUTH).json()
    assert job["state"] == "running" and job["events"][0]["phase"] == "requested"
    assert client.get("/api/v1/jobs/nope", headers=AUTH).status_code == 404
    cancelled = client.post("/api/v1/jobs/j1/cancel", headers=AUTH).json()
    assert cancelled["state"] == "cancelling"


def test_unexpected_errors_keep_the_envelope(service: FakeService, tmp_path: Path) -> None:
    def boom() -> list[Host]:
        raise RuntimeError("disk on fire")

    service.list_hosts = boom  # type: ignore[method-assign]
    client = TestClient(create_app(service, admin_accounts(tmp_path, TOKEN)),
                        raise_server_exceptions=False)
    resp = client.get("/api/v1/hosts", headers=AUTH)
    assert resp.status_code == 500
    assert resp.json()["error"]["type"] == "InternalError"


def test_unknown_route_uses_the_envelope(client: TestClient) -> None:
    resp = client.get("/api/v1/nothing", headers=AUTH)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "HTTPError"

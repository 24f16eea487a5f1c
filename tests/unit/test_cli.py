"""The CLI end to end against the real API app over a fake service (no server, no libvirt)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth_support import admin_accounts
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.api.schemas import JobOut
from ferry.checks.finding import Finding, Status
from ferry.cli import main as cli
from ferry.cli import render, render_jobs
from ferry.cli.client import FerryClient
from ferry.errors import NotFound, RefusedError
from ferry.job import Job, JobEvent, JobState
from ferry.model import VM, Host, Network, VMState
from ferry.reports import LiveProgress, LiveReport
from ferry.service import DatastoreView, FerryService, VMCreateRequest

TOKEN = "cli-token"
HOST = Host(name="kvm-alpha", uri="qemu+tls://alpha/system", connected=True, cpus=4,
            memory_mib=8192, free_memory_mib=2048)
VM1 = VM(name="web1", uuid="u1", host="kvm-alpha", state=VMState.RUNNING,
         memory_kib=1024 * 1024, vcpus=2, lab_address="192.168.100.11")
FINDINGS = [
    Finding("cpu.pinned", Status.ERROR, "web2 is pinned to CPUs 0-1", "remove <vcpupin>"),
    Finding("disk.local", Status.ERROR, "vda is on local storage of kvm-alpha",
            "move it to a shared datastore"),
]
GiB = 1 << 30


def job(state: JobState, phase: str, **kw: Any) -> Job:
    return Job(id="job-7", kind="migrate", vm="web1", source_host="kvm-alpha",
               dest_host="kvm-beta", state=state, phase=phase, created_at=1000.0,
               started_at=1000.0, **kw)


PRECOPY = job(JobState.RUNNING, "precopy", progress=LiveProgress(
    phase="precopy", memory_total=GiB, memory_processed=612 << 20,
    memory_remaining=412 << 20, iteration=3, dirty_rate_bps=45 << 20,
    memory_bps=110 << 20, elapsed_ms=5400))
EVENTS = (JobEvent(1000.0, "requested", "migration requested"),
          JobEvent(1000.25, "precopy", "copying memory"),
          JobEvent(1006.5, "done", "running on kvm-beta"))
DONE = job(JobState.SUCCEEDED, "done", finished_at=1006.5, events=EVENTS, report=LiveReport(
    total_ms=6500, downtime_ms=42, heartbeat_gap_ms=180, heartbeat_lost=0,
    data_bytes=1288 << 20, iterations=5, policy_actions=("auto-converge at iter 4",)))


class ScriptedService(FerryService):
    """get_job walks through ``script``; cancel_job switches to the cancelled ending."""

    def __init__(self, script: list[Job]) -> None:
        self.script = script
        self.cancelled = False
        self.created: list[VMCreateRequest] = []

    def list_hosts(self) -> list[Host]:
        return [HOST]

    def list_vms(self) -> list[VM]:
        return [VM1]

    def get_vm(self, name: str) -> VM:
        if name != VM1.name:
            raise NotFound(f"no VM named {name!r}")
        return VM1

    def list_datastores(self) -> list[DatastoreView]:
        return []

    def list_networks(self) -> list[Network]:
        return [Network("kvm-alpha", "Production", "virbr1", None, True)]

    def create_vm(self, request: VMCreateRequest) -> VM:
        self.created.append(request)
        return replace(VM1, name=request.name)

    def start_migration(self, vm: str, dest_host: str | None,
                        dest_datastore: str | None = None, disk_format: str = "same",
                        disks: tuple[str, ...] = (), cold: bool = False,
                        requested_by: str | None = None, policy: str | None = None,
                        bandwidth_mibps: int | None = None) -> Job:
        if vm == "web2":
            raise RefusedError(f"cannot migrate {vm} to {dest_host}", FINDINGS)
        self.get_vm(vm)
        return job(JobState.QUEUED, "requested")

    def get_job(self, job_id: str) -> Job:
        if job_id != "job-7":
            raise NotFound(f"no job {job_id!r}")
        if self.cancelled:
            return replace(DONE, state=JobState.CANCELLED, phase="rollback",
                           error="migration cancelled by user", report=None)
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def cancel_job(self, job_id: str) -> Job:
        self.cancelled = True
        return job(JobState.CANCELLING, "precopy")

    def list_jobs(self, limit: int = 100) -> list[Job]:
        return [DONE]


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "POLL_INTERVAL", 0.0)


@pytest.fixture
def service() -> ScriptedService:
    return ScriptedService([PRECOPY, PRECOPY, DONE])


@pytest.fixture
def client(service: ScriptedService, tmp_path: Path) -> Iterator[FerryClient]:
    with TestClient(create_app(service, admin_accounts(tmp_path, TOKEN))) as http:
        yield FerryClient(http=http, token=TOKEN)


def run(client: FerryClient, capsys: pytest.CaptureFixture[str], *argv: str,
        ) -> tuple[int, str, str]:
    code = cli.main(list(argv), client=client, extensions=[])
    out, err = capsys.readouterr()
    return code, out, err


def test_host_list_is_a_table(client: FerryClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(client, capsys, "host", "list")
    assert code == 0
    header, row = out.splitlines()
    assert "kvm-alpha" in row and "connected" in row and "2.0 GiB free of 8.0 GiB" in row
    assert header.index("STATE") == row.index("connected")  # columns line up


def test_vm_list_and_show(client: FerryClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(client, capsys, "vm", "list")
    assert code == 0 and "web1" in out and "1.0 GiB" in out and "192.168.100.11" in out
    code, out, _ = run(client, capsys, "vm", "show", "web1")
    assert code == 0 and "UUID" in out and "kvm-alpha" in out


def test_unknown_vm_exits_2_naming_it(client: FerryClient,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(client, capsys, "vm", "show", "ghost")
    assert code == 2 and out == ""
    assert err.startswith("ferry: error: ") and "ghost" in err


def test_refused_migration_prints_every_finding(client: FerryClient,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(client, capsys, "migrate", "web2", "--host", "kvm-beta")
    assert code == 4
    lines = err.splitlines()
    assert lines[0] == "ferry: error: cannot migrate web2 to kvm-beta"
    assert "  [ERROR] cpu.pinned  web2 is pinned to CPUs 0-1 — remove <vcpupin>" in lines
    assert any(line.startswith("  [ERROR] disk.local  vda is on local") for line in lines)


def test_migrate_waits_and_prints_the_report(client: FerryClient,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(client, capsys, "migrate", "web1", "--host", "kvm-beta")
    assert code == 0
    # stderr is not a TTY under capsys: plain progress lines, once per phase
    assert err.count("precopy  59%") == 1 and "612 MiB/1.0 GiB" in err
    assert "\x1b" not in out + err  # no escape sequences where no terminal reads them
    assert "SUCCEEDED" in out and "42 ms (libvirt)" in out and "6.50 s" in out
    assert "1.3 GiB in 5 iterations" in out and "auto-converge at iter 4" in out
    assert "+   6.500 s  done" in out


def test_migrate_no_wait_json(client: FerryClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(client, capsys, "migrate", "web1", "--host", "kvm-beta", "--no-wait",
                       "--json")
    assert code == 0 and JobOut.model_validate_json(out).state is JobState.QUEUED


def test_failed_migration_exits_6(service: ScriptedService, client: FerryClient,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    service.script = [replace(DONE, state=JobState.FAILED, error="destination lost")]
    code, out, err = run(client, capsys, "migrate", "web1", "--host", "kvm-beta")
    assert code == 6 and "FAILED" in out and "ferry: error: destination lost" in err


def test_ctrl_c_cancels_and_waits(monkeypatch: pytest.MonkeyPatch, service: ScriptedService,
                                  client: FerryClient,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    service.script = [PRECOPY]
    calls = []

    def interrupt_once(_seconds: float) -> None:
        calls.append(_seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "sleep", interrupt_once)
    code, out, err = run(client, capsys, "migrate", "web1", "--host", "kvm-beta")
    assert service.cancelled and "cancelling job job-7" in err
    assert code == 7 and "CANCELLED" in out


def test_job_show_and_list(client: FerryClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(client, capsys, "job", "show", "job-7")  # script starts running
    assert code == 0 and "now: precopy" in out
    code, out, _ = run(client, capsys, "jobs", "--all")
    assert code == 0 and "job-7" in out and "kvm-alpha -> kvm-beta" in out
    code, _, err = run(client, capsys, "job", "show", "nope")
    assert code == 2 and "nope" in err


def test_vm_create_sends_the_workload(service: ScriptedService, client: FerryClient,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(client, capsys, "vm", "create", "lab1", "--host", "kvm-alpha",
                       "--datastore", "shared", "--memory", "1024", "--disk-format", "raw",
                       "--workload", "heartbeat,mem:256,disk", "--no-start")
    assert code == 0, err
    assert service.created == [VMCreateRequest(
        name="lab1", host="kvm-alpha", datastore="shared", memory_mib=1024, disk_format="raw",
        heartbeat=True, memory_workload_mib=256, disk_writer=True, start=False)]


def test_vm_create_rejected_by_validation(client: FerryClient,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(client, capsys, "vm", "create", "-x", "--host", "h", "--datastore", "d")
    assert code == 2  # argparse: "-x" is not a name
    code, _, err = run(client, capsys, "vm", "create", "bad/name", "--host", "h",
                       "--datastore", "d", "--vcpus", "99")
    assert code == 2 and "name" in err and "vcpus" in err


def test_bad_workload_is_a_usage_error(client: FerryClient,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(client, capsys, "vm", "create", "x", "--host", "h", "--datastore", "d",
                       "--workload", "cpu")
    assert code == 2 and "unknown workload 'cpu'" in err


def test_wrong_token_exits_3(service: ScriptedService, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with TestClient(create_app(service, admin_accounts(tmp_path, TOKEN))) as http:
        code = cli.main(["host", "list"], client=FerryClient(http=http, token="nope"),
                        extensions=[])
    assert code == 3 and "token" in capsys.readouterr().err


def test_server_down_says_run_ferry_serve(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    down = FerryClient("http://127.0.0.1:8470", "t", transport=httpx.MockTransport(refuse))
    code = cli.main(["vm", "list"], client=down, extensions=[])
    err = capsys.readouterr().err
    assert code == 3 and "ferry serve" in err and "127.0.0.1:8470" in err


def test_extensions_add_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    def serve(args: argparse.Namespace, _ctx: cli.Context) -> int:
        print(f"serving on {args.port}")
        return 0

    def register(commands: cli.Commands) -> None:
        commands.add("serve", serve, "Run the API server").add_argument("--port", type=int)

    assert cli.main(["serve", "--port", "9"], extensions=[register]) == 0
    assert capsys.readouterr().out == "serving on 9\n"


def test_render_helpers() -> None:
    assert render.human_bytes(512) == "512 B"
    assert render.human_bytes(612 << 20) == "612 MiB"
    assert render.human_bytes(GiB) == "1.0 GiB"
    assert render.human_mib(65536) == "64 GiB"
    line = render_jobs.progress_line(JobOut.model_validate(PRECOPY, from_attributes=True))
    assert line == ("precopy  59%  612 MiB/1.0 GiB  remaining 412 MiB  "
                    "iter 3  dirty 45 MiB/s  bw 110 MiB/s  5.40 s")

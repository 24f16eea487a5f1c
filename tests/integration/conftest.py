"""Integration fixtures: a real lab (libvirtd per host, QEMU guests) and a real ferry server.

Assertions look at the hosts through plain ``virsh`` over TLS, independent of
ferry's own inventory, so a test fails when ferry believes something the
hosts do not show.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from ferry.api.schemas import JobOut
from ferry.lab.collector import HeartbeatCollector

LAB_HOSTS = 3


def _lab_possible() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("libvirtd", "qemu-system-x86_64", "virsh", "ip"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool}"
    return None


# Modules that build and tear down a lab of their own: they must run before the
# session's shared lab exists, or their teardown would remove it from under the rest.
OWN_LAB_MODULES = ("test_guest_boot.py", "test_lab_hosts.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in OWN_LAB_MODULES)  # stable: order kept
    reason = _lab_possible()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the lab tests, but {reason}")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class LabEnv:
    ferry_home: Path
    url: str
    hosts: list[str]
    uris: dict[str, str]
    collector: HeartbeatCollector

    def ferry(self, *argv: str) -> Result:
        """Run the ferry CLI in-process against the lab's server."""
        from ferry.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        return Result(code, out.getvalue(), err.getvalue())

    def virsh(self, host: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        uri = f"{self.uris[host]}?pkipath={self.ferry_home / 'pki'}"
        return subprocess.run(["virsh", "-q", "-c", uri, *argv], capture_output=True, text=True,
                              check=check, timeout=60)

    def domains(self, host: str) -> dict[str, str]:
        """Every domain defined or running on host, by libvirt itself: name -> state."""
        names = self.virsh(host, "list", "--all", "--name").stdout.split()
        return {n: self.virsh(host, "domstate", n).stdout.strip() for n in names}

    def volumes(self, host: str, pool: str) -> set[str]:
        self.virsh(host, "pool-refresh", pool)
        lines = self.virsh(host, "vol-list", pool).stdout.splitlines()
        return {line.split()[0] for line in lines if line.strip()}

    def snapshot(self) -> dict[str, object]:
        """What a refused request must leave unchanged on every host."""
        state: dict[str, object] = {}
        for host in self.hosts:
            state[f"{host}/domains"] = self.domains(host)
            for pool in ("shared", "local"):
                state[f"{host}/{pool}"] = self.volumes(host, pool)
        return state


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def lab() -> Iterator[LabEnv]:
    home = Path(tempfile.mkdtemp(prefix="ferry-test-home-"))
    port = _free_port()
    os.environ["FERRY_HOME"] = str(home)
    os.environ["FERRY_URL"] = f"http://127.0.0.1:{port}"
    os.environ.pop("FERRY_TOKEN", None)
    from ferry import config
    from ferry.lab.lab import lab_down, lab_up
    from ferry.server import build_server

    state = lab_up(hosts=LAB_HOSTS)
    server = build_server(config.ServerSettings(listen="127.0.0.1", port=port,
                                                database_url=config.database_url()))
    server.start_in_background()
    assert server.collector is not None, "the lab's heartbeat collector did not start"
    env = LabEnv(home, os.environ["FERRY_URL"], [h.name for h in state.hosts],
                 {h.name: h.uri for h in state.hosts}, server.collector)
    try:
        for host in state.hosts:
            result = env.ferry("host", "add", host.name, host.uri)
            assert result.code == 0, result.err
        yield env
    finally:
        server.stop()
        if not os.environ.get("FERRY_KEEP_LAB"):
            lab_down()
        shutil.rmtree(home, ignore_errors=True)


def define(lab: LabEnv, host: str, xml: str, tmp: Path, start: bool = True) -> str:
    """Define (and start) a domain straight through libvirt, as an admin's own tool would."""
    root = ET.fromstring(xml)
    name = root.findtext("name") or ""
    path = tmp / f"{name}.xml"
    path.write_text(xml)
    lab.virsh(host, "define", str(path))
    if start:
        lab.virsh(host, "start", name)
    assert lab.ferry("refresh").code == 0
    return name


def disk_source(xml: str, target: str = "vda") -> str | None:
    """The file (or device) disk ``target`` of a domain XML points at."""
    for disk in ET.fromstring(xml).findall("devices/disk"):
        dev = disk.find("target")
        source = disk.find("source")
        if dev is not None and dev.get("dev") == target and source is not None:
            return source.get("file") or source.get("dev")
    return None


def fill_disk(path: Path, fmt: str, offset_mib: int, mib: int) -> None:
    """Write ``mib`` MiB of non-zero data into a powered-off VM's disk file.

    The guest's disk writer owns the first 64 MiB; data for a long copy goes after it.
    """
    subprocess.run(["qemu-io", "-f", fmt, "-c", f"write -P 0x5a {offset_mib}M {mib}M",
                    str(path)], check=True, capture_output=True, timeout=300)


def heartbeat_back_ms(lab: LabEnv, vm: str, ended_at: float | None,
                      within: float = 2.0) -> int | None:
    """How long after a job's end (wall time) the guest's next heartbeat came, as a user
    would check it; None if none came within ``within`` seconds.
    """
    assert ended_at is not None, "the job has not ended"
    ended = time.monotonic() - (time.time() - ended_at)  # the job's end on the collector's clock
    lab.collector.wait_for_heartbeat(vm, max(ended + within + 0.5 - time.monotonic(), 0.0),
                                     after=ended)
    first = lab.collector.first_heartbeat_after(vm, ended)
    if first is None or first - ended > within:
        return None
    return round((first - ended) * 1000)


T = TypeVar("T")


def report_of(job: JobOut, kind: type[T]) -> T:
    """The job's report, which is of ``kind`` (the type its job kind writes)."""
    assert isinstance(job.report, kind), (job.kind, job.report)
    return job.report


def progress_of(job: JobOut, kind: type[T]) -> T:
    """The job's latest progress; before the first sample, one of nothing done."""
    return job.progress if isinstance(job.progress, kind) else kind()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def make_vm(lab: LabEnv) -> Iterator[Callable[..., None]]:
    """Creates lab VMs through ferry; deletes them (and their disks) after the test."""
    made: list[str] = []

    def create(name: str, *args: str) -> None:
        if name in lab.ferry("vm", "list").out.split():
            lab.ferry("vm", "delete", name)  # left by an earlier run with FERRY_KEEP_LAB
        result = lab.ferry("vm", "create", name, *args)
        assert result.code == 0, result.err
        made.append(name)

    yield create
    for name in made:
        lab.ferry("vm", "delete", name)


@pytest.fixture
def host_file() -> Iterator[tuple[Path, bytes]]:
    """A file of the hosts outside every datastore, filled with a marker no datastore has."""
    marker = f"FERRY-HOST-ONLY-{uuid.uuid4().hex}\n".encode()
    path = Path("/var/tmp") / f"ferry-host-file-{uuid.uuid4().hex[:8]}"
    path.write_bytes(marker * (2**20 // len(marker) + 1))
    yield path, marker
    path.unlink(missing_ok=True)


def holding(lab: LabEnv, marker: bytes) -> list[Path]:
    """Every file of every datastore that holds the marker, as bytes on disk."""
    from ferry.lab.lab import local_datastore_dir
    from ferry.lab.layout import SHARED_DATASTORE_DIR

    folders = [SHARED_DATASTORE_DIR, *(local_datastore_dir(h) for h in lab.hosts)]
    found = []
    for path in (p for folder in folders for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as handle:
            while chunk := handle.read(8 * 2**20):
                if marker in chunk:
                    found.append(path)
                    break
    return found


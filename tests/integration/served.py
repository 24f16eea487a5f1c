"""``ferry serve`` as its own process, as an admin runs it: killed by its pid, started again.

The session's in-process server (the ``lab`` fixture) keeps running on its own
database; a served process has a database of its own (a fresh SQLite file, or
the session's throwaway PostgreSQL) and shares the lab's FERRY_HOME: the same
API token and the same PKI for the hosts. Two control planes then watch the
same hosts, as two ferry installations would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LabEnv

from ferry.api.schemas import JobOut
from ferry.cli.client import ApiError, FerryClient
from ferry.lab.lab import set_link

FINISHED = ("succeeded", "failed", "cancelled")
START_S = 60.0  # a server's start includes a refresh of every host


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedFerry:
    """One ``ferry serve`` process on a database; restartable on the same port."""

    def __init__(self, lab: LabEnv, database_url: str, log: Path, name: str,
                 env: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.extra_env = env or {}
        self.database_url = database_url
        self.log = log
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = FerryClient(self.url)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"server {self.name} is not running"
        return self.proc.pid

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(FERRY_HOME=str(self.lab.ferry_home), FERRY_DATABASE_URL=self.database_url,
                   FERRY_LISTEN="127.0.0.1", FERRY_PORT=str(self.port), FERRY_URL=self.url)
        env.pop("FERRY_TOKEN", None)
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already runs"
        with self.log.open("ab") as out:
            out.write(f"--- {self.name} starting at {time.time():.3f}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ferry.cli.main", "serve"], env=self._env(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"ferry serve ({self.name}) exited {self.proc.returncode}:"
                                     f"\n{self.log_tail()}")
            try:
                self.client.list_hosts()
                return
            except ApiError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"ferry serve ({self.name}) did not answer within "
                                         f"{START_S:g} s:\n{self.log_tail()}") from None
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL by pid: no clean stop, no lease released, nothing flushed."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> None:
        self.start()

    def add_lab_hosts(self) -> None:
        for host in self.lab.hosts:
            self.client.add_host(host, self.lab.uris[host])

    def ferry(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """The ferry CLI, as a user runs it against this server."""
        return subprocess.run([sys.executable, "-m", "ferry.cli.main", *argv],
                              env=self._env(), capture_output=True, text=True, timeout=120)

    def job(self, job_id: str) -> JobOut:
        return self.client.get_job(job_id)

    def wait_finished(self, job_id: str, timeout: float) -> JobOut:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                job = self.job(job_id)
            except (ApiError, httpx.HTTPError):
                job = None  # restarting
            if job is not None and job.state in FINISHED:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish within {timeout:g} s: "
                             f"{self.job(job_id)}\n{self.log_tail()}")

    def history(self) -> str:
        """Every job this server's database holds, with its events (printed after a test)."""
        try:
            jobs = self.client.list_jobs()
        except (ApiError, httpx.HTTPError) as err:
            return f"--- jobs of {self.name}: not readable ({err})"
        lines = [f"--- jobs of {self.name}:"]
        for job in reversed(jobs):
            lines.append(f"{job.id[:8]} {job.kind} {job.vm} {job.source_host}->{job.dest_host} "
                         f"{job.state} owner={(job.owner or '-')[:8]} {job.error or ''}")
            lines += [f"    {e.at:.2f} {e.phase}: {e.message}" for e in self.job(job.id).events]
        return "\n".join(lines)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.client.close()


ServeFactory = Callable[..., ServedFerry]
"""(name, database URL, env=None): a started server; env adds to its environment."""


@pytest.fixture
def serve_ferry(lab: LabEnv, make_vm: Callable[..., None],
                tmp_path: Path) -> Iterator[ServeFactory]:
    """Starts ``ferry serve`` processes (name, database URL) with the lab's hosts added.

    None outlives the test. Afterwards the session's server is refreshed, so it
    finds the VMs where the served processes moved them (and can delete them).
    """
    served: list[ServedFerry] = []

    def start(name: str, database_url: str, env: dict[str, str] | None = None) -> ServedFerry:
        server = ServedFerry(lab, database_url, tmp_path / f"{name}.log", name, env)
        served.append(server)
        server.start()
        if not server.client.list_hosts():
            server.add_lab_hosts()
        return server

    try:
        yield start
    finally:
        for server in served:
            print(server.history())
            server.stop()
        for server in served:
            print(f"--- log of {server.name}:\n{server.log_tail()}")
        lab.ferry("refresh")


@pytest.fixture
def slow_link(lab: LabEnv) -> Iterator[Callable[[str | None], None]]:
    """Shapes host1's link (so a copy lasts); unshaped again whatever the test did."""
    try:
        yield lambda rate: set_link("host1", rate)
    finally:
        set_link("host1", None)


def where_it_runs(lab: LabEnv, vm: str) -> dict[str, str]:
    """host -> state of ``vm`` there, by virsh on every host."""
    return {h: s for h in lab.hosts if (s := lab.domains(h).get(vm)) is not None}

"""`ferry serve` on the lab's bridge address (not loopback): HTTPS or nothing.

The address is the lab's migration bridge in this machine's own namespace,
which every lab host reaches: the address an admin would serve the API on for
the hosts' network. Without a certificate the server refuses to start; with one
of the lab CA (`ferry lab cert`) the CLI, trusting that CA, works; a CLI
trusting another CA refuses the server; and plain HTTP gets no API answer.
Server and CLI are separate processes, as an admin runs them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LabEnv

from ferry import config
from ferry.lab import layout, tls

pytestmark = pytest.mark.lab

ADDRESS = layout.MIGRATION_GATEWAY
START_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((ADDRESS, port)) == 0


def _env(lab: LabEnv, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    # The lab's FERRY_HOME (its token and host PKI), a database of this test's own.
    env.update(FERRY_HOME=str(lab.ferry_home),
               FERRY_DATABASE_URL=f"sqlite:///{tmp_path / 'https.db'}", **extra)
    return env


def _ferry(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferry.cli.main", *argv], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_serving_the_lab_address_without_a_certificate_is_refused(lab: LabEnv,
                                                                  tmp_path: Path) -> None:
    port = _free_port()
    result = _ferry(_env(lab, tmp_path, FERRY_LISTEN=ADDRESS, FERRY_PORT=str(port)), "serve")
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"plain HTTP on {ADDRESS}" in result.stderr
    assert "FERRY_TLS_CERT" in result.stderr and "FERRY_TLS_KEY" in result.stderr
    assert not _listening(port)
    assert not (tmp_path / "https.db").exists()  # refused before it made anything


@dataclass
class Served:
    url: str
    port: int
    env: dict[str, str]  # the CLI's environment, trusting the lab CA


@pytest.fixture
def served(lab: LabEnv, tmp_path: Path) -> Iterator[Served]:
    certs = tmp_path / "api-tls"
    made = _ferry(_env(lab, tmp_path), "lab", "cert", "--address", ADDRESS, "--out", str(certs))
    assert made.returncode == 0, made.stderr
    assert f"FERRY_TLS_CERT={certs / tls.API_CERT_FILE}" in made.stdout
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.main", "serve", "--listen", ADDRESS,
             "--port", str(port), "--tls-cert", str(certs / tls.API_CERT_FILE),
             "--tls-key", str(certs / tls.API_KEY_FILE)],
            env=_env(lab, tmp_path), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_S
        while not _listening(port):
            assert proc.poll() is None, f"ferry serve exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"ferry serve did not listen:\n{log.read_text()}"
            time.sleep(0.2)
        url = f"https://{ADDRESS}:{port}"
        yield Served(url, port, _env(lab, tmp_path, FERRY_URL=url,
                                     FERRY_CA_FILE=str(layout.PKI_DIR / tls.CA_CERT_FILE)))
    finally:
        proc.kill()
        proc.wait(10)
        print(f"--- ferry serve log:\n{log.read_text(errors='replace')[-4000:]}")


def test_with_a_lab_ca_certificate_the_cli_trusting_the_lab_ca_works(
        lab: LabEnv, served: Served) -> None:
    host = lab.hosts[0]
    added = _ferry(served.env, "host", "add", host, lab.uris[host])
    assert added.returncode == 0, added.stderr
    listed = _ferry(served.env, "host", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(host))
    assert lab.uris[host] in row


def test_a_cli_trusting_another_ca_refuses_the_server(served: Served, tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    tls.save_ca(tls.create_ca("not the lab CA"), other)
    env = dict(served.env, FERRY_CA_FILE=str(other / tls.CA_CERT_FILE))
    result = _ferry(env, "host", "list")
    assert result.returncode == 3, result.stdout + result.stderr
    assert served.url in result.stderr
    assert "certificate cannot be verified" in result.stderr
    assert result.stdout == ""

    # Nor does the system's store know the lab CA.
    env.pop(config.CA_FILE_ENV)
    result = _ferry(env, "host", "list")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "certificate cannot be verified" in result.stderr


def test_plain_http_to_the_https_port_gets_no_api_answer(lab: LabEnv, served: Served) -> None:
    token = (lab.ferry_home / "token").read_text().strip()
    request = (f"GET /api/v1/hosts HTTP/1.1\r\nHost: {ADDRESS}:{served.port}\r\n"
               f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((ADDRESS, served.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not answer.startswith(b"HTTP/1.1 2"), answer[:200]
    assert b"[" not in answer and b"uri" not in answer  # no JSON listing of hosts

    result = _ferry(dict(served.env, FERRY_URL=f"http://{ADDRESS}:{served.port}"),
                    "host", "list")
    assert result.returncode != 0
    assert "https://" in result.stderr

"""Bad input tried systematically: schemathesis, driven by ferry's own OpenAPI schema,
against a real `ferry serve` process.

The server runs as an admin runs it (its own process, a fresh FERRY_HOME with
its token, SQLite) with a cluster and one registered host whose libvirtd does
not exist (a loopback address nothing listens on: refused at once, so no
request can hang on it and nothing leaves this machine). No lab is needed.

- Negative mode, every operation: data that breaks the schema. Every answer
  is a 4xx, never a 5xx, and nothing changed: the database's tables and every
  GET listing are the same after the request as before.
- Positive mode, every read (GET): valid data. No 5xx, and nothing changed.
- Positive mode, every write but `POST /hosts` (which would dial the URI it is
  given): no 5xx but the unreachable host's 502, and whatever changed, changed
  by an accepted (2xx) request.

Known names (the cluster, the host) replace generated ones in about half the
cases, so requests get past "not found" into the code behind it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from auth_support import admin_accounts
from hypothesis import HealthCheck, reject, settings
from schemathesis import GenerationMode

from ferry import validate
from ferry.api.app import API_PREFIX, create_app
from ferry.api.tls import is_loopback
from ferry.errors import InputError
from ferry.job import JobState
from ferry.lab import tls
from ferry.model import Host
from ferry.service import FerryService
from ferry.store.db import Store

CLUSTER = "prod"
HOST = "ghost"
# Nothing listens on libvirt's TLS port on loopback: a connection is refused at once.
HOST_URI = "qemu+tls://127.0.0.1/system"
LISTINGS = ("/hosts", "/clusters", "/vms", "/datastores", "/networks", "/jobs")
# Moves with the clock, not with requests.
# Moved by time, or by any request at all: a token's last use, and the audit trail,
# which records refused requests too (tests/unit/test_access.py checks what it says).
VOLATILE = {("servers", "seen_at"), ("jobs", "lease_until"), ("tokens", "last_used_at")}
UNJUDGED_TABLES = {"audit"}
EXAMPLES = int(os.environ.get("FERRY_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    token: str
    database: Path
    http: httpx.Client
    answers: Counter[str] = field(default_factory=Counter)  # "mode status" -> requests

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def settle(self, timeout: float = 30.0) -> None:
        """Wait for every job an accepted request started: a job's own later writes
        are that request's doing, not the next one's."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.http.get("/api/v1/jobs", headers=self.auth).json()
            if all(JobState(job["state"]).finished for job in jobs):
                return
            assert time.monotonic() < deadline, f"jobs did not finish: {jobs}"
            time.sleep(0.05)

    def snapshot(self) -> dict[str, Any]:
        """Every record (the database's tables) and every GET listing."""
        state: dict[str, Any] = {}
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as db:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            for table in (t for t in tables if t not in UNJUDGED_TABLES):
                cursor = db.execute(f'SELECT * FROM "{table}"')
                columns = [c[0] for c in cursor.description]
                keep = [i for i, c in enumerate(columns) if (table, c) not in VOLATILE]
                state[table] = sorted(repr([row[i] for i in keep]) for row in cursor)
        for path in LISTINGS:
            resp = self.http.get(f"/api/v1{path}", headers=self.auth)
            assert resp.status_code == 200, (path, resp.text)
            state[path] = resp.json()
        return state


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("fuzz-home")
    database = home / "ferry.db"
    # As an install has it: ferry's client certificate for the hosts' libvirtd.
    tls.install_client_pki(tls.create_ca(), home / "pki")
    store = Store(f"sqlite:///{database}")
    store.add_host(Host(name=HOST, uri=HOST_URI))
    store.add_cluster(CLUSTER)
    store.close()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(FERRY_HOME=str(home), FERRY_LISTEN="127.0.0.1", FERRY_PORT=str(port))
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ferry.cli.main", "serve"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=url, timeout=60)
    served_answers: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        served = Served(url, (home / "token").read_text().strip(), database, http)
        served_answers = served.answers
        yield served
    finally:
        http.close()
        proc.kill()
        proc.wait(10)
        print(f"--- answers by mode and status: {dict(sorted(served_answers.items()))}, "
              f"{sum(served_answers.values())} requests")
        print(f"--- ferry serve log:\n{log.read_text(errors='replace')[-6000:]}")


# The schema the app publishes; the served process is checked to publish the same.
# (Built here, not fetched in a fixture: schemathesis' fixture loader does not run
# under this project's pytest.)
OPENAPI = create_app(FerryService(), admin_accounts("sqlite://", "unused")).openapi()


def _schema(mode: GenerationMode) -> schemathesis.BaseSchema:
    # The event stream never ends, so no call of it can be judged by its answer; the
    # console's browser tests read it.
    schema = schemathesis.openapi.from_dict(OPENAPI).exclude(path=f"{API_PREFIX}/events")
    schema.config.generation.update(modes=[mode], max_examples=EXAMPLES,
                                    allow_extra_parameters=False, with_security_parameters=False)
    return schema


negative = _schema(GenerationMode.NEGATIVE)
positive = _schema(GenerationMode.POSITIVE)


def test_the_served_process_publishes_the_schema_fuzzed(served: Served) -> None:
    assert served.http.get("/openapi.json").json() == OPENAPI


def _known_names(case: schemathesis.Case, negated: set[str] = frozenset()) -> None:
    """Half the cases (by a hash of the generated value) name what exists.

    Not in a DELETE of the seed itself: the host cannot be registered again (it
    does not answer), and every later case would meet "not found" instead.
    """
    path = case.operation.path
    paths = {} if "path" in negated else case.path_parameters or {}
    for key, value in list(paths.items()):
        if not isinstance(value, str) or _odd(value):
            continue
        seed_deleted = case.method == "DELETE" and path.endswith("/{name}")
        if key == "host" or (key == "name" and path.startswith("/api/v1/hosts")):
            case.path_parameters[key] = value if seed_deleted else HOST
        elif key == "name" and path.startswith("/api/v1/clusters"):
            case.path_parameters[key] = value if seed_deleted else CLUSTER
    body = case.body
    if isinstance(body, dict) and path != "/api/v1/hosts" and "body" not in negated:
        for key in ("host",):
            if isinstance(body.get(key), str) and not _odd(body[key]):
                body[key] = HOST


def _odd(value: str) -> bool:
    return bool(hashlib.sha1(value.encode()).digest()[0] % 2)


def _dials_out(case: schemathesis.Case) -> bool:
    """A host URI ferry would connect to, anywhere but loopback."""
    body = case.body if isinstance(case.body, dict) else {}
    uri = body.get("uri")
    if case.operation.path != "/api/v1/hosts" or not isinstance(uri, str):
        return False
    try:
        validate.host_uri(uri)
    except InputError:
        return False
    return not is_loopback(urlsplit(uri).hostname or "")


def _call(served: Served, case: schemathesis.Case) -> tuple[int, str]:
    if _dials_out(case):
        reject()  # never a connection to an address this test does not own
    response = case.call(base_url=served.url, headers=served.auth, timeout=60)
    if 200 <= response.status_code < 300:
        served.settle()
    mode = "negative" if _negated(case) else "positive"
    served.answers[f"{mode} {case.method} {response.status_code}"] += 1
    return response.status_code, response.text[:500]


def _server_fault(status: int, text: str) -> bool:
    """A 5xx, but for the one ferry gives by design: the registered host does not answer."""
    return status >= 500 and not (status == 502 and '"type":"HostUnreachable"' in text
                                  and f"host {HOST} at {HOST_URI}" in text)


def _where(case: schemathesis.Case) -> str:
    return (f"{case.method} {case.formatted_path} query={case.query} "
            f"body={case.body!r:.300}")


def _negated(case: schemathesis.Case) -> set[str]:
    """Where schemathesis made the case invalid (none: a valid case among the negative ones).

    The only header the schema declares is the bearer token, which every call
    here sends right (hostile tokens are tested with the API's auth).
    """
    meta = case.meta
    if meta is None:
        return set()
    negated = {where.value for where, part in meta.components.items()
               if part.mode is GenerationMode.NEGATIVE and where.value != "header"}
    if any(isinstance(v, list | dict) for v in (case.query or {}).values()):
        # A list or an object for a one-value query parameter goes on the wire as the
        # parameter repeated, or as other parameters, which the server reads as one
        # value or none: not invalid once sent.
        negated.discard("query")
    return negated


@negative.parametrize()
@FUZZ
def test_invalid_requests_are_refused_and_change_nothing(
        case: schemathesis.Case, served: Served) -> None:
    negated = _negated(case)
    _known_names(case, negated)
    before = served.snapshot()
    status, text = _call(served, case)
    assert not _server_fault(status, text), f"{_where(case)} -> {status} {text}"
    if negated:
        assert 400 <= status < 500, f"{_where(case)} (invalid: {negated}) -> {status} {text}"
    if status >= 300:
        assert served.snapshot() == before, f"{_where(case)} -> {status} changed records"


@positive.include(method="GET").parametrize()
@FUZZ
def test_valid_reads_never_fail_the_server_and_change_nothing(
        case: schemathesis.Case, served: Served) -> None:
    _known_names(case)
    before = served.snapshot()
    status, text = _call(served, case)
    assert not _server_fault(status, text), f"{_where(case)} -> {status} {text}"
    assert served.snapshot() == before, f"{_where(case)} -> {status} changed records"


@positive.exclude(method="GET").exclude(method="POST", path="/api/v1/hosts").parametrize()
@FUZZ
def test_valid_writes_never_fail_the_server_and_only_accepted_ones_change_records(
        case: schemathesis.Case, served: Served) -> None:
    _known_names(case)
    before = served.snapshot()
    status, text = _call(served, case)
    assert not _server_fault(status, text), f"{_where(case)} -> {status} {text}"
    if not 200 <= status < 300:
        assert served.snapshot() == before, f"{_where(case)} -> {status} changed records"

"""A private, throwaway PostgreSQL server for tests (unit and integration alike).

``tests/conftest.py`` starts one per test session (fixture ``postgres_server``)
when a test asks for it. It skips when PostgreSQL cannot be started here (not
root, no ``postgresql`` package, no psycopg), unless ``CI`` is set: CI must run
the PostgreSQL tests, so there the same reason fails them instead.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

PG_ROOT = Path("/usr/lib/postgresql")
PG_USER = "postgres"
PG_DATABASE = "ferry"


def _pg_bindir() -> Path | None:
    """The newest Debian PostgreSQL's bin dir (/usr/lib/postgresql/<version>/bin)."""
    found = [p.parent for p in PG_ROOT.glob("*/bin/initdb")
             if p.parent.parent.name.isdigit() and (p.parent / "pg_ctl").exists()]
    return max(found, key=lambda b: int(b.parent.name)) if found else None


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here; None when it can."""
    if os.geteuid() != 0:
        return "the PostgreSQL tests need root (to run the server as the postgres user)"
    if _pg_bindir() is None:
        return f"no PostgreSQL server binaries in {PG_ROOT}/<version>/bin: install postgresql"
    if shutil.which("runuser") is None:
        return "the PostgreSQL tests need runuser"
    try:
        pwd.getpwnam(PG_USER)  # created by the postgresql package
    except KeyError:
        return f"no {PG_USER} user: install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'psycopg[binary]>=3.1'"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*argv: str | Path) -> None:
    cmd = ["runuser", "-u", PG_USER, "--", *(str(a) for a in argv)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {result.returncode}:\n"
                           f"{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class PostgresServer:
    url: str  # what ferry is given: postgresql+psycopg://postgres@127.0.0.1:PORT/ferry
    bindir: Path
    data: Path
    log: Path
    socket_dir: Path
    port: int

    def pg_ctl(self, *argv: str) -> None:
        # -l: the server's output goes to its log, never to our pipes (which would hang run()).
        _as_postgres(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                     *argv)

    def restart(self) -> None:
        """Restart the server under its clients, as an administrator or a failover would."""
        self.pg_ctl("-m", "fast", "restart")

    def empty(self) -> str:
        """Drop everything an earlier test left in the database; returns its URL."""
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        finally:
            engine.dispose()
        return self.url

    def load(self, dump: Path) -> None:
        """Run a plain-SQL pg_dump file with psql, as an administrator restores one."""
        copy = self.data.parent / dump.name  # readable by the postgres user
        shutil.copyfile(dump, copy)
        shutil.chown(copy, PG_USER, PG_USER)
        _as_postgres(self.bindir / "psql", "-q", "-X", "-v", "ON_ERROR_STOP=1",
                     "-h", self.socket_dir, "-p", str(self.port), "-U", PG_USER,
                     "-d", PG_DATABASE, "-f", copy)


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL listening on 127.0.0.1 only, removed on exit."""
    bindir = _pg_bindir()
    assert bindir is not None
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="ferry-test-pg-"))
    shutil.chown(root, PG_USER, PG_USER)
    port = _free_port()
    server = PostgresServer(f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}",
                            bindir, root / "data", root / "server.log", root, port)
    running = False
    try:
        _as_postgres(bindir / "initdb", "-D", server.data, "-U", PG_USER, "--auth=trust",
                     "--encoding=UTF8", "--no-sync")
        options = shlex.join(["-p", str(port), "-c", "listen_addresses=127.0.0.1",
                              "-c", f"unix_socket_directories={root}", "-c", "fsync=off"])
        try:
            server.pg_ctl("-o", options, "start")
        except RuntimeError as exc:
            log = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{log}") from None
        running = True
        _as_postgres(bindir / "createdb", "-h", root, "-p", str(port), "-U", PG_USER,
                     PG_DATABASE)
        print(f"\nPostgreSQL {bindir.parent.name} on 127.0.0.1:{port} in {root}, "
              f"up in {time.monotonic() - started:.2f} s")
        yield server
    finally:
        if running:
            server.pg_ctl("-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)

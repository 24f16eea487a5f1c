"""Fixtures for every test directory: the session's throwaway PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pgserver import PostgresServer, running_server, unavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for this test session (see tests/pgserver.py)."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url

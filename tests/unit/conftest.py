"""Fixtures of the unit tests: a ferry database on SQLite and on the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pgserver import PostgresServer

from ferry.store.db import Store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty ferry database: a fresh SQLite file, or the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ferry.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.empty()


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[[], Store]]:
    """Opens Store instances on the test's database (a server, or one restarted); closes them."""
    opened: list[Store] = []

    def open_() -> Store:
        store = Store(store_url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()

"""Run a store test on both backends: `store_at(name)` is where a store named `name` keeps its
state, a SQLite file under the test's tmp_path, or (the `postgres` case) the URL of a fresh
PostgreSQL database, one per name within a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pg_server import new_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store_at(request, tmp_path) -> Iterator[Callable[[str], Path | str]]:
    if request.param == "sqlite":
        yield lambda name: tmp_path / name
        return
    server = request.getfixturevalue("postgres_url")
    databases: dict[str, str] = {}

    def where(name: str) -> str:
        if name not in databases:
            databases[name] = new_database(server)
        return databases[name]

    yield where
    from retrieval.stores.postgres import close_pools

    close_pools()  # one pool per test database: close them before the next test opens more

"""A real PostgreSQL 16 with pgvector for the `postgres` tests, started by the pgserver package
(PyPI: the server's binaries inside the wheel; no Docker, no network).

`postgres_url` (session fixture) starts one server in a temporary folder, yields its libpq
URL (`postgresql://...`) and stops it after the session; when it cannot start, the tests
that need it are skipped with the reason. `fresh_database(url)` returns the URL of a new
empty database on that server, so each test starts from nothing.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """libpq URL of a PostgreSQL server started for this test session (skips if it cannot start)."""
    try:
        import pgserver
    except ImportError as exc:
        pytest.skip(f"pgserver is not installed ({exc}); `make install` installs it")
    # Outside pytest's 0700 temporary folders: as root, pgserver runs postgres as another user.
    folder = Path(tempfile.mkdtemp(prefix="medkb-pg-"))
    try:
        server = pgserver.get_server(folder, cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - any failure to start means: these tests cannot run here
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL (pgserver) could not start in {folder}: {type(exc).__name__}: {exc}")
    url = server.get_uri()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # A throwaway server: no fsync, so creating a database per test and the final shutdown
        # checkpoint do not wait on a busy disk (reloadable settings; nothing else changes).
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield url
    finally:
        try:
            from retrieval.stores.postgres import close_pools

            close_pools()  # connections of this process first, so the server stops at once
        finally:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)


def fresh_database(postgres_url: str) -> str:
    """Create a new empty database on the server at `postgres_url`; returns its URL."""
    import psycopg

    name = f"medkb_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))


new_database = fresh_database  # the name the search-backend branch's copy of this module gives the plain function

"""A real PostgreSQL 16 server with pgvector for the tests that need one (marker `postgres`).

The `pgserver` package (PyPI) ships PostgreSQL's binaries and pgvector inside its wheel and
starts a server on a Unix socket in a temporary directory: no Docker, no network.

Contract (shared by the search-backend tests and the conversation/review/feedback tests):
- `postgres_url` (session scope): starts the server in a temp dir, creates one fresh database
  for the session and yields its libpq URL (`postgresql://...`); the server stops at the end.
  The test is skipped, saying why, when the server cannot start.
- `fresh_database` (function scope): a new empty database on the same server; its URL.
- `new_database(postgres_url)`: the same as a plain function (for session-scoped fixtures).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest


def _with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead (same host, user, socket query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def new_database(postgres_url: str) -> str:
    """Create a new empty database (with the pgvector extension available) on the server that
    `postgres_url` points at; return its libpq URL."""
    import psycopg

    name = "medkb_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_database(postgres_url, name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A libpq URL (`postgresql://...`) of a fresh database on a PostgreSQL 16 + pgvector server
    started for this test session (skipped with the reason when it cannot start)."""
    try:
        import pgserver
        import psycopg  # noqa: F401  (the driver the server code uses)
    except ImportError as exc:
        pytest.skip(f"PostgreSQL tests need pgserver and psycopg (pip install -e '.[test]'): {exc}")
    directory = Path(tempfile.mkdtemp(prefix="medkb-pg-"))
    try:
        server = pgserver.get_server(directory, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises its own and subprocess errors; any of them means no server
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"pgserver could not start PostgreSQL in {directory}: {type(exc).__name__}: {exc}")
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # A throwaway server: no fsync, so creating a database per test and the final shutdown
        # checkpoint do not wait on a busy disk (reloadable settings; nothing else changes).
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield new_database(server.get_uri())
    finally:
        try:
            from retrieval.stores.postgres import close_pools

            close_pools()  # this process's store connections first, so the server stops at once
        finally:
            server.cleanup()
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fresh_database(postgres_url: str) -> str:
    """The URL of a new empty database on the session's server (one per test)."""
    return new_database(postgres_url)

"""PostgreSQL under medkb's stores (MEDKB_BACKEND=postgres): every server process reads and
writes the same database, so replicas are stateless.

Connections come from a psycopg_pool pool per URL, shared by the stores of a process: at
most `POOL_MAX` connections (uvicorn's request threads wait for one at most the store's
connect timeout, or its lock timeout if shorter). Each use first sets `lock_timeout` to the
store's timeout, which also proves the connection alive (a dead one, e.g. after a server
restart, is dropped and another taken). Connections run in autocommit; `begin` opens a
transaction, and a write transaction takes the store's advisory lock (`pg_advisory_xact_lock`,
released at commit or rollback), as SQLite's `BEGIN IMMEDIATE` serialises writers of one file.
Tables are created in the URL's default schema.
"""

from __future__ import annotations

import atexit
import functools
import re
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool

from retrieval.stores.database import CONNECT_TIMEOUT, Connection, Database, Schema

POOL_MAX = 10  # connections per process and URL; two replicas hold at most 20 of PostgreSQL's default 100
SCHEMA_LOCK = zlib.crc32(b"medkb.schema")  # taken while any store creates its tables

TABLE_NAMES = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def lock_key(name: str) -> int:
    """The advisory lock id of a store's writers (CRC-32 of 'medkb.NAME', fits a bigint)."""
    return zlib.crc32(f"medkb.{name}".encode())


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def pool_for(url: str) -> ConnectionPool:
    """The process's pool for `url`, opened on first use without waiting for the server: a
    server that is down makes each use wait at most its timeout, not the start-up."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None or pool.closed:
            pool = ConnectionPool(url, min_size=1, max_size=POOL_MAX, open=False, num_workers=1,
                                  kwargs={"autocommit": True, "connect_timeout": 5, "application_name": "medkb"}, name="medkb",
                                  check=ConnectionPool.check_connection)  # a connection the server dropped is replaced, not used
            pool.open(wait=False)
            _pools[url] = pool
        return pool


def close_pools() -> None:
    """Close every pool of this process (at exit; tests between databases)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close(timeout=1.0)


atexit.register(close_pools)


class PostgresConnection(Connection):
    dialect = "postgres"

    def __init__(self, raw: psycopg.Connection, timeout_ms: int, key: int):
        self.raw = raw
        self.timeout_ms = timeout_ms
        self.key = key

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        if params:
            return self.raw.execute(_placeholders(sql), params)
        return self.raw.execute(sql)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self.raw.cursor() as cursor:
                cursor.executemany(_placeholders(sql), rows)

    def begin(self, write: bool = False) -> None:
        statement = "BEGIN"
        if write:
            statement += f"; SELECT pg_advisory_xact_lock({self.key})"
        self.raw.execute(statement)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def script(self, schema: Schema) -> None:
        """Create the schema unless all its tables exist already: after the first start a role with
        only SELECT, INSERT, UPDATE and DELETE on the tables is enough, and no DDL lock is taken."""
        tables = TABLE_NAMES.findall(schema.postgres)
        if tables and self.raw.execute("SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest(%s::text[]) AS t", (tables,)).fetchone()[0]:
            return
        # Two processes creating the same tables at once can collide in the catalogue: one at a time.
        self.raw.execute(f"BEGIN; SET LOCAL lock_timeout = {max(self.timeout_ms, 10000)}; SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
        self.raw.execute(schema.postgres)
        self.raw.execute("COMMIT")


class PostgresDatabase(Database):
    """The PostgreSQL database at `url` (libpq URL) as seen by the store `name`. Lock waits last
    at most `timeout` seconds; waits for a pooled connection at most `connect_timeout` seconds,
    or `timeout` if shorter (psycopg_pool.PoolTimeout, an OperationalError, after it)."""

    dialect = "postgres"
    Error = (psycopg.Error, OSError)
    IntegrityError = psycopg.IntegrityError

    def __init__(self, url: str, name: str, timeout: float = 0.25, connect_timeout: float = CONNECT_TIMEOUT):
        self.url = url
        self.where = redacted(url)
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.key = lock_key(name)

    @contextmanager
    def connect(self) -> Iterator[PostgresConnection]:
        pool = pool_for(self.url)
        timeout_ms = max(1, int(self.timeout * 1000))
        for attempt in (1, 2):
            raw = pool.getconn(timeout=self.connect_timeout)
            try:
                raw.execute(f"SET lock_timeout = {timeout_ms}")
                break
            except psycopg.OperationalError:
                pool.putconn(raw)  # closed or broken: the pool drops it
                if attempt == 2:
                    raise
        try:
            yield PostgresConnection(raw, timeout_ms, self.key)
        except BaseException:
            if not raw.closed and raw.info.transaction_status in (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR):
                try:
                    raw.execute("ROLLBACK")
                except psycopg.Error:
                    pass
            raise
        finally:
            pool.putconn(raw)

    def close(self) -> None:
        with _pools_lock:
            pool = _pools.pop(self.url, None)
        if pool is not None:
            pool.close(timeout=1.0)

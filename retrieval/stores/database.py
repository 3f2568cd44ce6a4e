"""The connection layer under medkb's stores: the same small API over SQLite and PostgreSQL.

A store holds a `Database` (from `open_database`) and does its work in a `Connection`:

    with db.connect() as conn:            # a fresh SQLite connection, or one from the pool
        conn.script(SCHEMA)               # CREATE ... IF NOT EXISTS, once per store
        with conn.transaction(write=True):
            conn.execute("INSERT INTO t (a) VALUES (?) RETURNING id", (1,)).fetchone()

SQL is written once with `?` placeholders and the subset both engines speak (RETURNING
instead of `lastrowid`, `"user"` quoted); only the schema differs per dialect. A write
transaction takes the store's write lock first (SQLite: `BEGIN IMMEDIATE`, the whole file;
PostgreSQL: a transaction-scoped advisory lock named after the store), so read-then-write
work (bounds, counters) behaves the same on both. Lock waits last `timeout` seconds on both.
On PostgreSQL, waiting for a connection (the server down or unreachable, or the pool busy)
lasts at most `connect_timeout` seconds, or `timeout` if shorter: a store with a long lock
timeout (the review log's 10 s) still fails within a few seconds when the database is down.

Errors are the driver's own: `db.Error` is the tuple a store catches to mean "the store
cannot be used now", `db.IntegrityError` a constraint refused the change.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

URL_PREFIXES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT = 3.0  # seconds; MEDKB_DB_CONNECT_TIMEOUT's default (medkb/settings.py), as the search backend's POOL_WAIT_SECONDS


@dataclass(frozen=True)
class Schema:
    """A store's tables in each dialect: scripts of idempotent statements (CREATE ... IF NOT EXISTS)."""

    sqlite: str
    postgres: str

    def for_dialect(self, dialect: str) -> str:
        return self.sqlite if dialect == "sqlite" else self.postgres


class Connection:
    """One connection of either dialect. `execute` takes `?` placeholders and returns the
    driver's cursor (fetchone, fetchall, rowcount). Outside `begin`/`transaction` every
    statement commits on its own."""

    dialect = ""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def begin(self, write: bool = False) -> None:
        """Start a transaction; `write` takes the store's write lock first (waits at most the timeout)."""
        raise NotImplementedError

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def script(self, schema: Schema) -> None:
        """Create the schema's tables if missing (safe when several processes do it at once)."""
        raise NotImplementedError

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Connection]:
        """begin ... commit, or roll back and re-raise on any exception."""
        self.begin(write)
        try:
            yield self
        except BaseException:
            if self.in_transaction:
                try:
                    self.rollback()
                except Exception:  # the connection is gone: the original error says more
                    pass
            raise
        self.commit()


class Database:
    """Where one store keeps its state. `dialect` is 'sqlite' or 'postgres'; `path` the SQLite
    file (None on PostgreSQL); `where` names it for messages (never with a password)."""

    dialect = ""
    path: Path | None = None
    where = ""
    timeout = 0.25
    Error: tuple[type[BaseException], ...] = ()
    IntegrityError: type[BaseException] = Exception

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for one unit of work; a transaction left open by an exception is rolled back."""
        raise NotImplementedError
        yield  # pragma: no cover

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Connection]:
        """A connection inside one transaction (committed on success)."""
        with self.connect() as conn, conn.transaction(write):
            yield conn

    def close(self) -> None:
        """Release what this database holds (PostgreSQL: its pool). Later use reopens."""


def is_database_url(where: object) -> bool:
    """True for a PostgreSQL URL (postgresql://... or postgres://...)."""
    return isinstance(where, str) and where.startswith(URL_PREFIXES)


def open_database(where: Path | str | Database, *, name: str, timeout: float, keep_open: bool = False,
                  connect_timeout: float = CONNECT_TIMEOUT) -> Database:
    """The database of the store `name` (used for PostgreSQL's write lock): a SQLite file for a
    path, PostgreSQL for a postgresql:// URL, or `where` itself when it is a Database already.
    `timeout` bounds lock waits, in seconds; on PostgreSQL a wait for a pooled connection lasts
    at most the shorter of `connect_timeout` and `timeout`.
    `keep_open`: SQLite keeps one connection per thread instead of one per use."""
    if isinstance(where, Database):
        return where
    if is_database_url(where):
        from retrieval.stores.postgres import PostgresDatabase

        return PostgresDatabase(str(where), name=name, timeout=timeout, connect_timeout=connect_timeout)
    return SQLiteDatabase(Path(where), timeout=timeout, keep_open=keep_open)


# ---------------------------------------------------------------- SQLite


class SQLiteConnection(Connection):
    dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    def begin(self, write: bool = False) -> None:
        self.raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def script(self, schema: Schema) -> None:
        self.raw.executescript(schema.sqlite)  # commits first: never call inside a transaction


class SQLiteDatabase(Database):
    """A SQLite file, WAL journal, foreign keys on, lock waits bounded by `timeout` seconds.
    One connection per unit of work (so a file moved aside is recreated on the next use), or
    with `keep_open` one per thread, kept for the life of the object (cheap reads per request)."""

    dialect = "sqlite"
    Error = (sqlite3.Error, OSError)
    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path: Path, timeout: float = 0.25, keep_open: bool = False):
        self.path = Path(path)
        self.where = str(self.path)
        self.timeout = timeout
        self.keep_open = keep_open
        self._local = threading.local()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            raw.execute("PRAGMA foreign_keys = ON")
            raw.execute("PRAGMA journal_mode = WAL")
        except BaseException:
            raw.close()
            raise
        return raw

    @contextmanager
    def connect(self) -> Iterator[SQLiteConnection]:
        raw = getattr(self._local, "raw", None) if self.keep_open else None
        if raw is None:
            raw = self._open()
            if self.keep_open:
                self._local.raw = raw
        try:
            yield SQLiteConnection(raw)
        except BaseException:
            if raw.in_transaction:
                try:
                    raw.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        finally:
            if not self.keep_open:
                raw.close()

    def close(self) -> None:
        raw = getattr(self._local, "raw", None)
        if raw is not None:
            raw.close()
            self._local.raw = None

"""Conversations for follow-up questions, kept in SQLite (or PostgreSQL, shared by every
replica, with MEDKB_BACKEND=postgres) so they survive a restart.

Bounded four ways: a conversation expires `ttl_seconds` after its last question, keeps
at most `max_turns` questions (the oldest go first), one client holds at most
`max_per_client` live conversations (its own least recently used go first), and at most
`max_conversations` live at once (the least recently used go first).

Ids are 192 random bits (`secrets.token_urlsafe(24)`, 32 characters of A-Z a-z 0-9 _ -):
holding the id is what lets a client continue a conversation.

A store that cannot be used (a corrupt, truncated or empty file, a read-only file or folder, a
lock held by another process; a PostgreSQL server that is unreachable, read-only or holds a
lock on the tables) never raises anything but `ConversationStoreUnavailable`,
quickly: lock waits last `timeout` seconds, and after a failure the store is not tried
again for `retry_seconds`, so callers answer without the conversation instead of queueing
behind it. `health()` says whether it works and why not; the first failure of a kind is
logged once, with what to do. Moving a bad file aside brings follow-ups back without a
restart: the next attempt creates a fresh file.
"""

from __future__ import annotations

import errno
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from retrieval.accounts import store_file_state
from retrieval.stores import Connection, Database, Schema, open_database

log = logging.getLogger("medkb.conversations")

ID_BYTES = 24  # 192 bits; token_urlsafe gives 32 characters
ID_ALPHABET = "A-Za-z0-9_-"

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    question TEXT NOT NULL,
    resolved TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (conversation_id, position)
);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated);
"""
CLIENT_COLUMN = "ALTER TABLE conversations ADD COLUMN client TEXT NOT NULL DEFAULT ''"
# Each turn keeps how it was read and the conversation's topic after it (files written before
# turns were classified have neither: their topic is read again from the questions).
TURN_COLUMNS = {"kind": "ALTER TABLE turns ADD COLUMN kind TEXT", "topic": "ALTER TABLE turns ADD COLUMN topic TEXT"}
CLIENT_INDEX = "CREATE INDEX IF NOT EXISTS conversations_client ON conversations(client, updated)"
# PostgreSQL databases start with every column (no files from before them to migrate).
POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    client TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    question TEXT NOT NULL,
    resolved TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    kind TEXT,
    topic TEXT,
    PRIMARY KEY (conversation_id, position)
);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated);
CREATE INDEX IF NOT EXISTS conversations_client ON conversations(client, updated);
"""
SCHEMA = Schema(sqlite=SQLITE_SCHEMA, postgres=POSTGRES_SCHEMA)

T = TypeVar("T")


class ConversationNotFound(KeyError):
    pass


class EmptyFile(sqlite3.DatabaseError):
    """A 0-byte file where the conversations file should be (accounts.store_file_state): not a
    store, though SQLite would make an empty one of it; the store leaves it as it is."""


class ConversationStoreUnavailable(RuntimeError):
    """The store cannot be read or written now; `reason` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Turn:
    """One turn: the question as asked, as searched ('' when it was not searched), how it was
    read (retrieval.followups.TURN_KINDS; None in files from before turns were classified)
    and the conversation's topic after it."""

    question: str
    resolved: str
    kind: str | None = None
    topic: str | None = None


@dataclass(frozen=True)
class StoreHealth:
    ok: bool
    reason: str | None = None


def diagnose(exc: BaseException, path: Path) -> tuple[str, str]:
    """(a short reason, one line of advice naming the file) for a failure of the store."""
    text = str(exc).lower()
    off = "follow-ups are off until then (answers go on without them)"
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return ("locked: another process holds a lock on the conversations file",
                f"another process holds a lock on {path}: stop it (`fuser {path}` names it); {off}")
    if isinstance(exc, EmptyFile):
        return ("empty: a 0-byte file, not a conversation store",
                f"{path} is an empty file (0 bytes), not a conversation store; it is left as it is: restore it from a backup, "
                f"or remove it to start a new one; {off}")
    if "readonly" in text or "read-only" in text or "unable to open" in text or (
            isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR)):
        return (f"not writable: {exc}",
                f"the server cannot write {path} (or its folder, where SQLite keeps -wal and -shm files beside it): "
                f"make both writable or set MEDKB_CONVERSATIONS_DB elsewhere; {off}")
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text or "corrupt" in text
                                                     or "integrity" in text):
        return (f"corrupt: {exc}", f"move {path} (and any {path.name}-wal and {path.name}-shm beside it) aside; {off}")
    return (f"unavailable: {exc}", f"the conversations file {path} cannot be used ({exc}); {off}")


def diagnose_postgres(exc: BaseException, where: str) -> tuple[str, str]:
    """(a short reason, one line of advice naming the database) for a failure of a PostgreSQL store,
    read from the error's SQLSTATE (PostgreSQL's error codes, appendix A of its manual)."""
    state = getattr(exc, "sqlstate", None) or ""
    off = "follow-ups are off until then (answers go on without them)"
    if state == "55P03":  # lock_not_available: lock_timeout expired
        return ("locked: another session holds a lock on the conversations tables",
                f"another session holds a lock on the conversations tables in {where} (pg_locks names it); {off}")
    if state in ("25006", "42501"):  # read_only_sql_transaction, insufficient_privilege
        return (f"not writable: {exc}", f"the server cannot write the conversations tables in {where}: give its role write access "
                                        f"or point MEDKB_DATABASE_URL at the primary; {off}")
    if not state or state.startswith(("08", "57P")):  # no answer, connection exceptions, server shutting down
        return (f"unreachable: {exc}", f"the server cannot reach {where}: check MEDKB_DATABASE_URL and that PostgreSQL runs; {off}")
    return (f"unavailable: {exc}", f"the conversations tables in {where} cannot be used ({exc}); {off}")


class ConversationStore:
    """Conversations in a SQLite file (`where` a path) or PostgreSQL (`where` a postgresql://
    URL, or a Database from retrieval.stores). `ttl_seconds`, `timeout` and `retry_seconds`
    are seconds; `clock` gives epoch seconds, `monotonic` seconds for retry waits."""

    def __init__(self, where: Path | str | Database, ttl_seconds: int = 86400, max_turns: int = 20, max_conversations: int = 10000, clock=time.time,
                 max_per_client: int = 1000, timeout: float = 0.25, retry_seconds: float = 1.0, monotonic=time.monotonic):
        self.db = open_database(where, name="conversations", timeout=timeout)
        self.path = self.db.path  # None on PostgreSQL
        self.ttl = ttl_seconds
        self.max_turns = max_turns
        self.max_conversations = max_conversations
        self.max_per_client = max_per_client
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._schema_ready = False
        self._failure: str | None = None  # the reason, while the store is failing
        self._retry_at = 0.0
        try:
            with self._connect() as db:
                self._check(db, full=True)
            self._recovered()
        except self.db.Error as exc:
            self._failed(exc)

    # -- connections, schema, health ---------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection in autocommit mode: each method opens its own transaction."""
        if not self._schema_ready and self.path is not None and store_file_state(self.path) == "empty":
            raise EmptyFile(f"{self.path} is an empty file (0 bytes)")  # before connecting: SQLite would make a store of it
        with self.db.connect() as db:
            if not self._schema_ready:
                self._ensure_schema(db)
            yield db

    def _ensure_schema(self, db: Connection) -> None:
        db.script(SCHEMA)
        if db.dialect != "sqlite":
            self._schema_ready = True
            return
        columns = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
        if "client" not in columns:
            db.execute(CLIENT_COLUMN)  # files written before conversations had an owner
        db.execute(CLIENT_INDEX)
        turn_columns = {row[1] for row in db.execute("PRAGMA table_info(turns)")}
        for name, statement in TURN_COLUMNS.items():
            if name not in turn_columns:
                db.execute(statement)
        self._schema_ready = True

    def _check(self, db: Connection, full: bool = False) -> None:
        """Raise unless the store reads, checks (a SQLite file's integrity) and takes the write lock."""
        if full and db.dialect == "sqlite":
            problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"integrity check failed: {'; '.join(problems[:3])}")
        db.begin(write=True)
        db.execute("UPDATE conversations SET updated = updated WHERE 1 = 0")  # a write: refused by a read-only file or database
        db.rollback()

    def _failed(self, exc: BaseException) -> ConversationStoreUnavailable:
        reason, advice = diagnose(exc, self.path) if self.path is not None else diagnose_postgres(exc, self.db.where)
        if self._failure != reason:
            log.error("conversation store unusable (%s): %s", reason, advice)
        self._failure = reason
        self._schema_ready = False
        self._retry_at = self.monotonic() + self.retry_seconds
        return ConversationStoreUnavailable(reason)

    def _recovered(self) -> None:
        if self._failure is not None:
            log.warning("conversation store %s works again; follow-ups are back on", self.db.where)
        self._failure = None

    def _run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a connection, turning every storage failure into ConversationStoreUnavailable."""
        if self._failure is not None and self.monotonic() < self._retry_at:
            raise ConversationStoreUnavailable(self._failure)
        with self._lock:
            try:
                with self._connect() as db:
                    result = work(db)
            except ConversationNotFound:
                raise
            except self.db.Error as exc:
                raise self._failed(exc) from exc
            self._recovered()
            return result

    def health(self) -> StoreHealth:
        """Probe the store now (bounded by the lock timeout): readable, writable, not locked."""
        try:
            with self._connect() as db:
                self._check(db)
        except self.db.Error as exc:
            return StoreHealth(False, self._failed(exc).reason)
        self._recovered()
        return StoreHealth(True)

    # -- conversations -----------------------------------------------------------------

    def history(self, conversation_id: str) -> list[Turn]:
        """The conversation's turns, oldest first. Raises ConversationNotFound if unknown or expired."""
        def work(db: Connection) -> list[Turn]:
            db.begin()
            row = db.execute("SELECT updated FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None or row[0] < self.clock() - self.ttl:
                raise ConversationNotFound(conversation_id)
            rows = db.execute("SELECT question, resolved, kind, topic FROM turns WHERE conversation_id = ? ORDER BY position",
                              (conversation_id,)).fetchall()
            db.commit()
            return [Turn(*row) for row in rows]

        return self._run(work)

    def append(self, conversation_id: str | None, question: str, resolved: str, client: str = "", kind: str | None = None,
               topic: str | None = None) -> str:
        """Record a turn (starting a conversation for `client` when `conversation_id` is None); returns the id.
        Raises ConversationNotFound when the conversation expired or was dropped meanwhile."""
        def work(db: Connection) -> str:
            now = self.clock()
            db.begin(write=True)
            db.execute("DELETE FROM conversations WHERE updated < ?", (now - self.ttl,))
            cid = conversation_id
            if cid is None:
                cid = secrets.token_urlsafe(ID_BYTES)
                held = db.execute("SELECT COUNT(*) FROM conversations WHERE client = ?", (client,)).fetchone()[0]
                if self.max_per_client and held >= self.max_per_client:
                    db.execute("DELETE FROM conversations WHERE id IN (SELECT id FROM conversations WHERE client = ? ORDER BY updated LIMIT ?)",
                               (client, held - self.max_per_client + 1))
                db.execute("INSERT INTO conversations (id, created, updated, client) VALUES (?, ?, ?, ?)", (cid, now, now, client))
            elif db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid)).rowcount == 0:
                raise ConversationNotFound(cid)
            last = db.execute("SELECT COALESCE(MAX(position), -1) FROM turns WHERE conversation_id = ?", (cid,)).fetchone()[0]
            db.execute("INSERT INTO turns (conversation_id, position, question, resolved, created, kind, topic) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (cid, last + 1, question, resolved, now, kind, topic))
            db.execute("DELETE FROM turns WHERE conversation_id = ? AND position <= ?", (cid, last + 1 - self.max_turns))
            excess = db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] - self.max_conversations
            if excess > 0:
                db.execute("DELETE FROM conversations WHERE id IN (SELECT id FROM conversations WHERE id != ? ORDER BY updated LIMIT ?)", (cid, excess))
            db.commit()
            return cid

        return self._run(work)

    def delete(self, conversation_id: str) -> bool:
        def work(db: Connection) -> bool:
            with db.transaction(write=True):
                return db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

        return self._run(work)

    def count(self, client: str | None = None) -> int:
        def work(db: Connection) -> int:
            if client is None:
                return db.execute("SELECT COUNT(*) FROM conversations WHERE updated >= ?", (self.clock() - self.ttl,)).fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM conversations WHERE updated >= ? AND client = ?", (self.clock() - self.ttl, client)).fetchone()[0]

        return self._run(work)

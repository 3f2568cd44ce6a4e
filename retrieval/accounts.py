"""Reviewer accounts, API tokens, sign-in sessions and the sign-in rate limit, in SQLite (or
PostgreSQL, shared by every replica, with MEDKB_BACKEND=postgres).

- Passwords are hashed with Argon2id (argon2-cffi); a failed look-up of an unknown name
  costs the same as a wrong password.
- API tokens and session ids are random 256-bit strings shown once; only their SHA-256
  is stored (they are not guessable, so a slow hash adds nothing), so a copy of the
  database holds no usable credential. Tokens are revocable; sessions expire.
- Failed sign-ins are counted per account and per client address over a sliding window.

Roles: reviewer (approves, requests changes), editor (starts reviews, retires), admin (all).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.reviews import Reviewer
from retrieval.stores import CONNECT_TIMEOUT, Connection, Database, Schema, open_database

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
TOKEN_PREFIX = "mkb_"


class Role(enum.StrEnum):
    REVIEWER = "reviewer"
    EDITOR = "editor"
    ADMIN = "admin"


class AccountError(ValueError):
    """A request about accounts that cannot be done (bad name, weak password, unknown account)."""


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    credentials TEXT NOT NULL DEFAULT '',
    conflicts TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'editor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL REFERENCES users(name),
    token_sha256 TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires);
CREATE TABLE IF NOT EXISTS signin_failures (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS signin_failures_key ON signin_failures(key, at);
"""
# The same tables in PostgreSQL, where `user` is a reserved word (quoted in every statement).
POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    credentials TEXT NOT NULL DEFAULT '',
    conflicts TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'editor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES users(name),
    token_sha256 TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires);
CREATE TABLE IF NOT EXISTS signin_failures (
    key TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS signin_failures_key ON signin_failures(key, at);
"""
SCHEMA = Schema(sqlite=SQLITE_SCHEMA, postgres=POSTGRES_SCHEMA)


@dataclass(frozen=True)
class Account:
    name: str
    display_name: str
    credentials: str
    conflicts: str  # conflict-of-interest statement
    role: Role
    created_at: str
    disabled: bool = False

    @property
    def reviewer(self) -> Reviewer:
        """The account as the review log records it."""
        return Reviewer(self.name, self.display_name, self.credentials, self.role.value)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: str
    label: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class Session:
    token: str  # the cookie value (only its hash is stored)
    csrf: str
    account: Account
    expires: float


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def default_hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)


def store_file_state(location: Path | str) -> str:
    """What a store's SQLite file (the accounts, the review log, the conversations) at `location`
    is, without opening it: "missing" (no file), "empty" (a 0-byte file with no write-ahead log
    holding data beside it: not a database, though SQLite would make one of it, hiding, say, a
    store truncated by a failed copy), or "present". A database URL (str) is "present":
    PostgreSQL answers for itself when opened."""
    if not isinstance(location, Path):
        return "present"
    if not location.exists():
        return "missing"
    wal = location.with_name(location.name + "-wal")
    if location.is_file() and location.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        return "empty"
    return "present"


class EmptyStoreFile(Exception):
    """A 0-byte file where a store's SQLite file should be (store_file_state's "empty"); the
    message names the file, says it is left as it is, and what to do."""


def refuse_empty_store_file(location: Path | str, store: str) -> None:
    """Raise EmptyStoreFile when the `store` ("review log", "account store") at `location` is a
    0-byte file, before anything opens it (SQLite would make an empty store of it)."""
    if store_file_state(location) == "empty":
        article = "an" if store[:1] in "aeiou" else "a"
        raise EmptyStoreFile(f"{location} is an empty file (0 bytes), not {article} {store}; it is left as it is: "
                             f"restore the {store} from a backup, or remove the file to start a new one")


class AccountStore:
    """Accounts in a SQLite file (`where` a path) or PostgreSQL (`where` a postgresql:// URL, or
    a Database from retrieval.stores). Lock waits last at most `timeout` seconds, waits for a
    PostgreSQL connection at most `connect_timeout` (MEDKB_DB_CONNECT_TIMEOUT); `clock` gives
    epoch seconds. Storage failures raise the driver's errors (`self.db.Error`)."""

    def __init__(self, where: Path | str | Database, hasher=None, clock=time.time, timeout: float = 10.0,
                 connect_timeout: float = CONNECT_TIMEOUT):
        self.db = open_database(where, name="accounts", timeout=timeout, keep_open=True, connect_timeout=connect_timeout)
        self.path = self.db.path  # None on PostgreSQL
        self.clock = clock
        self._hasher = hasher
        self._dummy_hash: str | None = None
        with self.db.connect() as db:
            db.script(SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS

    @property
    def hasher(self):
        if self._hasher is None:
            self._hasher = default_hasher()
        return self._hasher

    def _db(self) -> sqlite3.Connection:
        """A plain connection to the SQLite file, for looking at what is stored (tests do)."""
        if self.path is None:
            raise TypeError("the accounts are in PostgreSQL, not in a SQLite file")
        return sqlite3.connect(self.path, timeout=self.db.timeout, isolation_level=None)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.db.connect() as db:
            return db.execute(sql, params).fetchall()

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A write transaction (committed on success, rolled back on any exception)."""
        with self.db.transaction(write=True) as db:
            yield db

    def _now_iso(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat(timespec="seconds")

    # -- accounts

    def add(self, name: str, role: str, password: str, display_name: str = "", credentials: str = "", conflicts: str = "") -> Account:
        if not NAME_RE.fullmatch(name or ""):
            raise AccountError(f"account name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
        try:
            role = Role(role)
        except ValueError:
            raise AccountError(f"unknown role {role!r}; expected one of {', '.join(r.value for r in Role)}") from None
        check_password(password)
        password_hash = self.hasher.hash(password)
        try:
            with self._connect() as db:
                db.execute("INSERT INTO users (name, display_name, credentials, conflicts, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (name, display_name.strip() or name, credentials.strip(), conflicts.strip(), role.value, password_hash, self._now_iso()))
        except self.db.IntegrityError:
            raise AccountError(f"an account named {name!r} already exists") from None
        return self.get(name)  # type: ignore[return-value]

    def get(self, name: str) -> Account | None:
        rows = self._read("SELECT name, display_name, credentials, conflicts, role, created_at, disabled FROM users WHERE name = ?", (name,))
        return _account(rows[0]) if rows else None

    def accounts(self) -> list[Account]:
        rows = self._read("SELECT name, display_name, credentials, conflicts, role, created_at, disabled FROM users ORDER BY name")
        return [_account(r) for r in rows]

    def authenticate(self, name: str, password: str) -> Account | None:
        """The account if the password is right (and the account enabled), else None. Costs
        one Argon2 verification either way."""
        from argon2.exceptions import InvalidHashError, VerificationError

        rows = self._read("SELECT password_hash, disabled FROM users WHERE name = ?", (name,))
        row = rows[0] if rows else None
        if row is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
            stored, disabled = self._dummy_hash, True
        else:
            stored, disabled = row
        try:
            self.hasher.verify(stored, password[:MAX_PASSWORD_CHARS])
        except (VerificationError, InvalidHashError):
            return None
        if disabled:
            return None
        return self.get(name)

    # -- API tokens

    def new_token(self, name: str, label: str = "") -> tuple[int, str]:
        """(token id, token). The token is shown once; only its hash is kept."""
        if self.get(name) is None:
            raise AccountError(f"no account named {name!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._connect() as db:
            [(token_id,)] = db.execute('INSERT INTO tokens ("user", token_sha256, label, created_at) VALUES (?, ?, ?, ?) RETURNING id',
                                       (name, _sha(token), label, self._now_iso())).fetchall()
        return token_id, token

    def tokens(self, name: str) -> list[TokenInfo]:
        rows = self._read('SELECT id, "user", label, created_at, revoked_at FROM tokens WHERE "user" = ? ORDER BY id', (name,))
        return [TokenInfo(*r) for r in rows]

    def revoke_tokens(self, name: str, token_id: int | None = None) -> int:
        """Revoke one of the account's tokens, or all of them; returns how many were live."""
        if self.get(name) is None:
            raise AccountError(f"no account named {name!r}")
        with self._connect() as db:
            if token_id is None:
                cur = db.execute('UPDATE tokens SET revoked_at = ? WHERE "user" = ? AND revoked_at IS NULL', (self._now_iso(), name))
            else:
                cur = db.execute('UPDATE tokens SET revoked_at = ? WHERE "user" = ? AND id = ? AND revoked_at IS NULL', (self._now_iso(), name, token_id))
        return cur.rowcount

    def account_for_token(self, token: str) -> Account | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        rows = self._read(
            'SELECT u.name, u.display_name, u.credentials, u.conflicts, u.role, u.created_at, u.disabled FROM tokens t JOIN users u ON u.name = t."user"'
            " WHERE t.token_sha256 = ? AND t.revoked_at IS NULL AND u.disabled = 0", (_sha(token),))
        return _account(rows[0]) if rows else None

    # -- sessions

    def new_session(self, name: str, ttl_seconds: int) -> Session:
        account = self.get(name)
        if account is None:
            raise AccountError(f"no account named {name!r}")
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        with self._connect() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute('INSERT INTO sessions (id_sha256, "user", csrf, created, expires) VALUES (?, ?, ?, ?, ?)', (_sha(token), name, csrf, now, now + ttl_seconds))
        return Session(token, csrf, account, now + ttl_seconds)

    def session(self, token: str) -> Session | None:
        if not token or len(token) > 200:
            return None
        rows = self._read('SELECT "user", csrf, expires FROM sessions WHERE id_sha256 = ?', (_sha(token),))
        row = rows[0] if rows else None
        if row is None or row[2] < self.clock():
            return None
        account = self.get(row[0])
        if account is None or account.disabled:
            return None
        return Session(token, row[1], account, row[2])

    def end_session(self, token: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_sha(token),))

    # -- failed sign-ins

    def failures(self, key: str, window_seconds: int) -> list[float]:
        """Times of the failures counted under `key` within the window, oldest first."""
        rows = self._read("SELECT at FROM signin_failures WHERE key = ? AND at >= ? ORDER BY at", (key, self.clock() - window_seconds))
        return [r[0] for r in rows]

    def note_failure(self, *keys: str) -> None:
        now = self.clock()
        with self._connect() as db:
            db.execute("DELETE FROM signin_failures WHERE at < ?", (now - 86400,))
            db.executemany("INSERT INTO signin_failures (key, at) VALUES (?, ?)", [(k, now) for k in keys])

    def clear_failures(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM signin_failures WHERE key = ?", (key,))


class SignInLimiter:
    """At most `per_account` failed sign-ins per account name and `per_address` per client
    address within `window_seconds`; past either, sign-in is refused (even with the right
    password) until the oldest failure leaves the window."""

    def __init__(self, store: AccountStore, per_account: int = 5, per_address: int = 20, window_seconds: int = 900):
        self.store = store
        self.per_account = per_account
        self.per_address = per_address
        self.window = window_seconds

    def retry_after(self, name: str, address: str) -> int | None:
        """Seconds to wait before trying again, or None when a try is allowed."""
        waits = []
        for key, limit in ((f"account:{name}", self.per_account), (f"address:{address}", self.per_address)):
            failures = self.store.failures(key, self.window)
            if len(failures) >= limit:
                waits.append(failures[-limit] + self.window - self.store.clock())
        return max(1, int(max(waits)) + 1) if waits else None

    def failed(self, name: str, address: str) -> None:
        self.store.note_failure(f"account:{name}", f"address:{address}")

    def succeeded(self, name: str) -> None:
        self.store.clear_failures(f"account:{name}")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password must be at least {MIN_PASSWORD_CHARS} characters long")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"the password must be at most {MAX_PASSWORD_CHARS} characters long")


def _account(row: tuple) -> Account:
    name, display_name, credentials, conflicts, role, created_at, disabled = row
    return Account(name, display_name, credentials, conflicts, Role(role), created_at, bool(disabled))

"""Answers as they were given, and what readers said about them, in SQLite (or PostgreSQL,
shared by every replica, with MEDKB_BACKEND=postgres).

Every answer gets a stable id (`new_answer_id()`, 96 random bits as 16 characters of
A-Z a-z 0-9 _ -) and is kept as the JSON the API returned, so its permalink shows it again
exactly as it was given (question, resolved query, key points, passages, references,
review statuses at that time), even after the corpus or its reviews change.

Bounded: an answer larger than `max_answer_bytes` is not kept (it has no permalink); at
most `max_answers` are kept (the oldest go first); feedback is at most `max_feedback`
entries (the oldest go first), at most `max_feedback_per_answer` per answer, each with a
comment of at most `max_comment_chars` characters. A feedback entry keeps the answer's id,
permalink, question and resolved query, so it still says what it was about after the answer
itself has been dropped.

A store that cannot be used raises only `AnswerStoreUnavailable` (lock waits last
`timeout` seconds): callers answer without a permalink rather than fail.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from retrieval.stores import Connection, Database, Schema, open_database

log = logging.getLogger("medkb.answers")

ID_BYTES = 12  # 96 bits; token_urlsafe gives 16 characters
ANSWER_ID_PATTERN = r"^[A-Za-z0-9_-]{16}$"

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    question TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_created ON answers(created);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    answer_id TEXT NOT NULL,
    permalink TEXT NOT NULL,
    created REAL NOT NULL,
    helpful INTEGER NOT NULL,
    comment TEXT,
    question TEXT NOT NULL,
    resolved_query TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_answer ON feedback(answer_id);
"""
# `rowid` orders answers kept in the same clock tick, as SQLite's implicit rowid does.
POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL,
    question TEXT NOT NULL,
    body TEXT NOT NULL,
    rowid BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS answers_created ON answers(created);
CREATE TABLE IF NOT EXISTS feedback (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    answer_id TEXT NOT NULL,
    permalink TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    helpful INTEGER NOT NULL,
    comment TEXT,
    question TEXT NOT NULL,
    resolved_query TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_answer ON feedback(answer_id);
"""
SCHEMA = Schema(sqlite=SQLITE_SCHEMA, postgres=POSTGRES_SCHEMA)

T = TypeVar("T")


def new_answer_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def permalink_of(answer_id: str) -> str:
    return f"/answers/{answer_id}"


class AnswerStoreUnavailable(RuntimeError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AnswerNotFound(KeyError):
    pass


class AnswerTooLarge(ValueError):
    pass


class FeedbackLimit(RuntimeError):
    """The answer already has as much feedback as one answer may have."""


@dataclass(frozen=True)
class StoredAnswer:
    id: str
    created: float
    question: str
    body: str  # the API's JSON, as it was returned


@dataclass(frozen=True)
class Feedback:
    id: int
    answer_id: str
    permalink: str
    created: float
    helpful: bool
    comment: str | None
    question: str
    resolved_query: str


class AnswerStore:
    """Answers and feedback in a SQLite file (`where` a path) or PostgreSQL (`where` a
    postgresql:// URL, or a Database from retrieval.stores). Lock waits last at most
    `timeout` seconds; `clock` gives epoch seconds."""

    def __init__(self, where: Path | str | Database, max_answers: int = 10000, max_answer_bytes: int = 524288, max_feedback: int = 10000,
                 max_feedback_per_answer: int = 20, max_comment_chars: int = 2000, timeout: float = 0.25, clock=time.time):
        self.db = open_database(where, name="answers", timeout=timeout)
        self.path = self.db.path  # None on PostgreSQL
        self.max_answers = max_answers
        self.max_answer_bytes = max_answer_bytes
        self.max_feedback = max_feedback
        self.max_feedback_per_answer = max_feedback_per_answer
        self.max_comment_chars = max_comment_chars
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._schema_ready = False
        self._failure: str | None = None

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self.db.connect() as db:
            if not self._schema_ready:
                db.script(SCHEMA)
                self._schema_ready = True
            yield db

    def _run(self, work: Callable[[Connection], T]) -> T:
        with self._lock:
            try:
                with self._connect() as db:
                    result = work(db)
            except self.db.Error as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._failure != reason:
                    log.error("answer store %s unusable (%s): answers go on without permalinks or feedback", self.db.where, reason)
                self._failure = reason
                self._schema_ready = False
                raise AnswerStoreUnavailable(reason) from exc
            if self._failure is not None:
                log.warning("answer store %s works again", self.db.where)
                self._failure = None
            return result

    # -- answers -------------------------------------------------------------------------

    def put(self, answer_id: str, question: str, body: str) -> None:
        """Keep an answer's JSON under its id. Raises AnswerTooLarge past `max_answer_bytes`."""
        size = len(body.encode("utf-8"))
        if size > self.max_answer_bytes:
            raise AnswerTooLarge(f"the answer is {size} bytes; at most {self.max_answer_bytes} are kept")

        def work(db: Connection) -> None:
            db.begin(write=True)
            db.execute("INSERT INTO answers (id, created, question, body) VALUES (?, ?, ?, ?)", (answer_id, self.clock(), question, body))
            excess = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] - self.max_answers
            if excess > 0:
                db.execute("DELETE FROM answers WHERE id IN (SELECT id FROM answers ORDER BY created, rowid LIMIT ?)", (excess,))
            db.commit()

        self._run(work)

    def get(self, answer_id: str) -> StoredAnswer:
        def work(db: Connection) -> StoredAnswer:
            row = db.execute("SELECT id, created, question, body FROM answers WHERE id = ?", (answer_id,)).fetchone()
            if row is None:
                raise AnswerNotFound(answer_id)
            return StoredAnswer(*row)

        return self._run(work)

    def count(self) -> int:
        return self._run(lambda db: db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    # -- feedback ------------------------------------------------------------------------

    def add_feedback(self, answer_id: str, helpful: bool, comment: str | None, question: str, resolved_query: str) -> Feedback:
        """Record feedback on a kept answer. Raises AnswerNotFound, or FeedbackLimit when the
        answer already has `max_feedback_per_answer` entries. The comment is cut to `max_comment_chars`."""
        comment = (comment or "").strip()[: self.max_comment_chars] or None

        def work(db: Connection) -> Feedback:
            db.begin(write=True)
            if db.execute("SELECT 1 FROM answers WHERE id = ?", (answer_id,)).fetchone() is None:
                raise AnswerNotFound(answer_id)
            held = db.execute("SELECT COUNT(*) FROM feedback WHERE answer_id = ?", (answer_id,)).fetchone()[0]
            if held >= self.max_feedback_per_answer:
                raise FeedbackLimit(answer_id)
            now = self.clock()
            [(feedback_id,)] = db.execute("INSERT INTO feedback (answer_id, permalink, created, helpful, comment, question, resolved_query) "
                                          "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                          (answer_id, permalink_of(answer_id), now, int(helpful), comment, question, resolved_query)).fetchall()
            excess = db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] - self.max_feedback
            if excess > 0:
                db.execute("DELETE FROM feedback WHERE id IN (SELECT id FROM feedback ORDER BY id LIMIT ?)", (excess,))
            db.commit()
            return Feedback(feedback_id, answer_id, permalink_of(answer_id), now, helpful, comment, question, resolved_query)

        return self._run(work)

    def feedback(self, limit: int = 50, offset: int = 0) -> tuple[list[Feedback], int]:
        """A page of feedback, newest first, and how many entries there are."""
        def work(db: Connection) -> tuple[list[Feedback], int]:
            total = db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
            rows = db.execute("SELECT id, answer_id, permalink, created, helpful, comment, question, resolved_query FROM feedback "
                              "ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
            return [Feedback(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7]) for r in rows], total

        return self._run(work)

"""Conversations for follow-up questions, kept in SQLite so they survive a restart.

Bounded three ways: a conversation expires `ttl_seconds` after its last question, keeps
at most `max_turns` questions (the oldest go first), and at most `max_conversations`
live at once (the least recently used go first).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
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


class ConversationNotFound(KeyError):
    pass


@dataclass(frozen=True)
class Turn:
    question: str
    resolved: str


class ConversationStore:
    def __init__(self, path: Path, ttl_seconds: int = 86400, max_turns: int = 20, max_conversations: int = 10000, clock=time.time):
        self.path = Path(path)
        self.ttl = ttl_seconds
        self.max_turns = max_turns
        self.max_conversations = max_conversations
        self.clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA journal_mode = WAL")
            yield db
            db.commit()
        finally:
            db.close()

    def history(self, conversation_id: str) -> list[Turn]:
        """The conversation's turns, oldest first. Raises ConversationNotFound if unknown or expired."""
        with self._lock, self._connect() as db:
            row = db.execute("SELECT updated FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None or row[0] < self.clock() - self.ttl:
                raise ConversationNotFound(conversation_id)
            rows = db.execute("SELECT question, resolved FROM turns WHERE conversation_id = ? ORDER BY position", (conversation_id,)).fetchall()
        return [Turn(q, r) for q, r in rows]

    def append(self, conversation_id: str | None, question: str, resolved: str) -> str:
        """Record a question (starting a conversation when `conversation_id` is None); returns the id."""
        now = self.clock()
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM conversations WHERE updated < ?", (now - self.ttl,))
            if conversation_id is None:
                conversation_id = secrets.token_urlsafe(12)
                db.execute("INSERT INTO conversations (id, created, updated) VALUES (?, ?, ?)", (conversation_id, now, now))
            else:
                if db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id)).rowcount == 0:
                    raise ConversationNotFound(conversation_id)
            last = db.execute("SELECT COALESCE(MAX(position), -1) FROM turns WHERE conversation_id = ?", (conversation_id,)).fetchone()[0]
            db.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?)", (conversation_id, last + 1, question, resolved, now))
            db.execute("DELETE FROM turns WHERE conversation_id = ? AND position <= ?", (conversation_id, last + 1 - self.max_turns))
            excess = db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] - self.max_conversations
            if excess > 0:
                db.execute("DELETE FROM conversations WHERE id IN (SELECT id FROM conversations WHERE id != ? ORDER BY updated LIMIT ?)", (conversation_id, excess))
        return conversation_id

    def count(self) -> int:
        with self._lock, self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM conversations WHERE updated >= ?", (self.clock() - self.ttl,)).fetchone()[0]

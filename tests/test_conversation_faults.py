"""The conversation store failing does not take answers down: with a corrupt, truncated,
read-only or locked SQLite file the server starts, /api/ask answers (without keeping the
conversation, and says so), /healthz reports the store as degraded within a second, the
log says what to do, and follow-ups come back once the file is fixed."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.conversations import ConversationStore, ConversationStoreUnavailable
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder

QUESTION = {"question": "causes of chronic microcytosis lead sideroblastic"}


@pytest.fixture
def index_root(tiny_corpus, tmp_path) -> Path:
    root = tmp_path / "index"
    build_index([tiny_corpus], root, FakeEmbedder())
    return root


def make_app(index_root: Path, db: Path):
    settings = Settings(index_dir=index_root, conversations_db=db)
    return create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))


def valid_store(db: Path, conversations: int = 300) -> None:
    """A healthy file holding `conversations` conversations of one turn (written in one transaction)."""
    store = ConversationStore(db)
    store.append(None, "first question", "first question", client="c")
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO conversations (id, created, updated, client) VALUES (?, ?, ?, ?)",
                         [(f"conv{i}", now, now, f"c{i % 7}") for i in range(conversations)])
        conn.executemany("INSERT INTO turns (conversation_id, position, question, resolved, created) VALUES (?, 0, ?, ?, ?)",
                         [(f"conv{i}", f"question {i} about iron deficiency anaemia", "resolved " * 20, now) for i in range(conversations)])
    conn.close()
    assert ConversationStore(db).health().ok


def corrupt(db: Path) -> None:
    db.write_bytes(os.urandom(64 * 1024))


def truncated(db: Path) -> None:
    """A valid file cut in half, as a full disk or a copy interrupted midway leaves it."""
    if not db.exists():
        valid_store(db)
    os.truncate(db, db.stat().st_size // 2)


@contextmanager
def locked(db: Path):
    """Another process's connection holding an exclusive transaction on the file."""
    if not db.exists():
        valid_store(db, 3)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO conversations (id, created, updated) VALUES ('held', 0, 0)")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def assert_degraded(client, kind: str) -> None:
    started = time.monotonic()
    health = client.get("/healthz")
    assert time.monotonic() - started < 1.0, "/healthz answers within a second"
    body = health.json()
    assert health.status_code == 200 and body["status"] == "degraded", body
    assert body["conversations"]["status"] == "degraded" and body["conversations"]["reason"].startswith(kind), body


def assert_answers_without_keeping(client, body=QUESTION) -> dict:
    started = time.monotonic()
    r = client.post("/api/ask", json=body)
    assert time.monotonic() - started < 2.0, "lock waits are short"
    answer = r.json()
    assert r.status_code == 200, answer
    assert answer["conversation_id"] is None
    if answer["turn"] == "no_subject":
        # A follow-up read without its conversation names no subject: said so, not answered from unrelated passages.
        assert not answer["key_points"] and answer["no_match"]
    else:
        assert answer["key_points"]
    assert "Follow-ups are unavailable" in answer["notice"]
    return answer


def advice(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "medkb.conversations" and r.levelno >= logging.ERROR]


@pytest.mark.parametrize("fault", [corrupt, truncated])
def test_a_bad_file_at_startup(index_root, tmp_path, caplog, fault):
    db = tmp_path / "conversations.sqlite"
    fault(db)
    caplog.set_level(logging.INFO)
    with TestClient(make_app(index_root, db)) as client:  # the server starts
        assert_degraded(client, "corrupt")
        assert_answers_without_keeping(client)
        follow = assert_answers_without_keeping(client, {"question": "how is it treated?", "conversation_id": "A" * 32})
        assert "without the conversation's earlier questions" in follow["notice"]
        lines = advice(caplog)
        assert len(lines) == 1, lines  # one line, however many requests failed
        assert f"move {db}" in lines[0] and "follow-ups are off until then" in lines[0]

        for leftover in db.parent.glob(db.name + "*"):
            leftover.rename(leftover.with_name(leftover.name + ".bad"))  # what the log line says to do
        time.sleep(1.1)  # the store is tried again a second after a failure
        kept = client.post("/api/ask", json=QUESTION).json()
        assert kept["conversation_id"] and kept["notice"] is None
        assert client.get("/healthz").json()["status"] == "ok"


def test_an_empty_file_at_startup_is_left_as_it_is(index_root, tmp_path, caplog):
    """A 0-byte conversations file (a failed copy, a `touch`) is not a store: the server starts
    with follow-ups off, says so in one line naming the file, and leaves it as it is, tries again
    included (SQLite made an empty store of it); removed, as the line says, follow-ups come back."""
    db = tmp_path / "conversations.sqlite"
    db.touch()
    caplog.set_level(logging.INFO)
    with TestClient(make_app(index_root, db)) as client:  # the server starts
        assert_degraded(client, "empty")
        assert_answers_without_keeping(client)
        time.sleep(1.1)  # tried again a second after the failure: still not made a store
        assert_answers_without_keeping(client)
        lines = advice(caplog)
        assert len(lines) == 1 and f"{db} is an empty file (0 bytes), not a conversation store; it is left as it is" in lines[0], lines
        assert db.stat().st_size == 0 and [p.name for p in tmp_path.glob(db.name + "*")] == [db.name]

        db.unlink()
        time.sleep(1.1)
        kept = client.post("/api/ask", json=QUESTION).json()
        assert kept["conversation_id"] and kept["notice"] is None
        assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize("fault", [corrupt, truncated])
def test_a_file_going_bad_while_serving(index_root, tmp_path, fault):
    db = tmp_path / "conversations.sqlite"
    valid_store(db)
    with TestClient(make_app(index_root, db)) as client:
        cid = client.post("/api/ask", json=QUESTION).json()["conversation_id"]
        assert cid and client.get("/healthz").json()["status"] == "ok"
        fault(db)
        assert_degraded(client, "corrupt")
        assert_answers_without_keeping(client)
        assert_answers_without_keeping(client, {"question": "how is it treated?", "conversation_id": cid})


def test_a_locked_file(index_root, tmp_path, caplog):
    db = tmp_path / "conversations.sqlite"
    valid_store(db, 3)
    caplog.set_level(logging.INFO)
    with TestClient(make_app(index_root, db)) as client:
        cid = client.post("/api/ask", json=QUESTION).json()["conversation_id"]
        with locked(db):
            assert_degraded(client, "locked")
            assert_answers_without_keeping(client)
            # Within a second of a failure the store is not tried at all: the follow-up is answered on its own.
            follow = assert_answers_without_keeping(client, {"question": "how is it treated?", "conversation_id": cid})
            assert "without the conversation's earlier questions" in follow["notice"]
            started = time.monotonic()
            for _ in range(10):  # after a failure the store is not waited on again for a while
                assert_answers_without_keeping(client)
            assert time.monotonic() - started < 3.0
        lines = advice(caplog)
        assert lines and "another process holds a lock" in lines[0] and "fuser" in lines[0]
        time.sleep(1.1)
        assert client.post("/api/ask", json={"question": "how is it treated?", "conversation_id": cid}).json()["conversation_id"] == cid
        assert client.get("/healthz").json()["status"] == "ok"


def test_locked_at_startup(index_root, tmp_path):
    db = tmp_path / "conversations.sqlite"
    with locked(db):
        started = time.monotonic()
        with TestClient(make_app(index_root, db)) as client:
            assert time.monotonic() - started < 5.0
            assert_degraded(client, "locked")
            assert_answers_without_keeping(client)


def test_lock_waits_are_bounded(tmp_path):
    db = tmp_path / "c.sqlite"
    store = ConversationStore(db, timeout=0.25)
    with locked(db):
        started = time.monotonic()
        with pytest.raises(ConversationStoreUnavailable, match="locked"):
            store.append(None, "q", "q")
        assert time.monotonic() - started < 0.9
        started = time.monotonic()
        with pytest.raises(ConversationStoreUnavailable):
            store.append(None, "q", "q")
        assert time.monotonic() - started < 0.05, "within the retry interval it fails at once"
        assert not store.health().ok


# -- read-only -----------------------------------------------------------------------------
#
# The tests run as root, and root writes through 0444 files in 0555 folders, so chmod alone
# proves nothing. The honest version: fork, and in the child give up root (setuid to
# nobody) before touching the store; the kernel then refuses writes as it would for any
# service account. Everything the child needs is imported, and the same requests made once,
# before the fork, since a nobody process cannot read the interpreter's files under /root.
# As a non-root user the child just keeps its own identity and chmod does the work.

def _drop_root() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        assert os.geteuid() == 65534


def _in_child(work) -> dict:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report as JSON down the pipe, never return into pytest
        os.close(read)
        try:
            _drop_root()
            result = {"ok": True, **work()}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(data or b'{"ok": false, "error": "the child said nothing"}')
    assert result["ok"], result.get("error")
    return result


def test_a_read_only_file_and_folder(tiny_corpus):
    shared = Path(tempfile.mkdtemp(prefix="medkb-readonly-"))  # outside pytest's 0700 tmp, so nobody can reach it
    try:
        shared.chmod(0o755)
        index = shared / "index"
        build_index([tiny_corpus], index, FakeEmbedder())
        folder = shared / "var"
        folder.mkdir()
        db = folder / "conversations.sqlite"
        valid_store(db, 5)
        with TestClient(make_app(index, db)) as warm:  # imports and first-request work happen here, as root
            warm.get("/healthz")
            warm.post("/api/ask", json=QUESTION)
        for path in (shared, *shared.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)

        def work() -> dict:
            probe = os.access(db, os.W_OK)
            with TestClient(make_app(index, db)) as client:
                health = client.get("/healthz").json()
                answer = client.post("/api/ask", json=QUESTION).json()
            return {"writable": probe, "health": health, "answer": {k: answer.get(k) for k in ("conversation_id", "notice", "key_points")}}

        result = _in_child(work)
        assert result["writable"] is False, "the child really cannot write the file"
        assert result["health"]["status"] == "degraded" and result["health"]["conversations"]["reason"].startswith("not writable"), result
        assert result["answer"]["key_points"] and result["answer"]["conversation_id"] is None and result["answer"]["notice"]
    finally:
        for path in (shared, *shared.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(shared)


# -- PostgreSQL ----------------------------------------------------------------------------
#
# The same promises with MEDKB_BACKEND=postgres: a lock held on the conversations tables by
# another session, or a server that does not answer, degrades follow-ups within the lock
# timeout, /healthz says why, and they come back once the lock is released.

@pytest.mark.postgres
def test_postgres_tables_locked_by_another_session(index_root, postgres_url, caplog):
    import psycopg

    from pg_server import new_database

    url = new_database(postgres_url)
    settings = Settings(index_dir=index_root, backend="postgres", database_url=url)
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as client:
        first = client.post("/api/ask", json={"question": "What is iron deficiency?"}).json()
        assert first["conversation_id"]
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("BEGIN")
            other.execute("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
            assert_degraded(client, "locked")
            assert_answers_without_keeping(client)
            other.execute("ROLLBACK")
        assert any("pg_locks" in line for line in advice(caplog)), advice(caplog)
        time.sleep(1.1)  # past the store's retry interval
        assert client.get("/healthz").json()["status"] == "ok"
        r = client.post("/api/ask", json={"question": "how is it treated?", "conversation_id": first["conversation_id"]}).json()
        assert r["conversation_id"] == first["conversation_id"] and r["resolved_query"] == "how is iron deficiency treated?", r


def test_an_unreachable_postgres_server(caplog):
    from retrieval.stores.postgres import close_pools

    from live_server import free_port

    url = f"postgresql://medkb:secret@127.0.0.1:{free_port()}/medkb"  # nothing listens there
    try:
        started = time.monotonic()
        store = ConversationStore(url, timeout=0.25)
        health = store.health()
        assert time.monotonic() - started < 2.0, "an unreachable server costs a lock timeout per try, not a connect timeout"
        assert not health.ok and health.reason.startswith("unreachable"), health
        time.sleep(1.1)
        with pytest.raises(ConversationStoreUnavailable, match="unreachable"):
            store.append(None, "q", "q")
        lines = advice(caplog)
        assert lines and all("MEDKB_DATABASE_URL" in line and "secret" not in line for line in lines), lines
    finally:
        close_pools()

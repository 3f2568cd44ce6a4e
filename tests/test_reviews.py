"""The review log and the status derived from it: append-only (triggers refuse UPDATE,
DELETE and REPLACE), approvals bound to content, and the rules for recording a decision."""

import datetime as dt
import sqlite3

import pytest

from indexer.articles import ArticleInvalid, parse_article
from indexer.index_store import ArticleRecord
from indexer.vocabulary import Audience, EvidenceKind, Notice, NoticeType, Reference, ReviewStatus
from retrieval.reviews import (
    ArticleReview,
    Decision,
    ReviewBook,
    Reviewer,
    ReviewRefused,
    ReviewState,
    ReviewStore,
    derive,
    record_decision,
    sha256_hex,
)

from sample_articles import MICRO_BODY
from sample_articles import article as article_text

A, B = sha256_hex(b"version one"), sha256_hex(b"version two")
REV = Reviewer("rev", "Dr Rhea Viewer", "MD, haematology", "reviewer")
EDITOR = Reviewer("ed", "Ed Itor", "", "editor")


def article(sha=A, authors=(), claimed=ReviewStatus.SUBMITTED, references=()) -> ArticleRecord:
    return ArticleRecord(id="a", title="Q?", review_status=claimed, last_updated=dt.date(2025, 1, 1), audience=Audience.CLINICIAN, specialty=None,
                         references=tuple(references), unresolved_references=(), related_questions=(), content_sha256=sha, path="a.md",
                         metadata={}, authors=tuple(authors))


@pytest.fixture
def store(store_at):
    """The log on SQLite, then on PostgreSQL."""
    return ReviewStore(store_at("reviews.sqlite"))


@pytest.fixture
def sqlite_store(tmp_path):
    return ReviewStore(tmp_path / "reviews.sqlite")


def state(store, sha=A, claimed=ReviewStatus.SUBMITTED) -> ArticleReview:
    return derive("a", sha, store.history("a"), claimed)


def test_nothing_in_the_log_means_submitted_whatever_the_front_matter_says(store):
    assert state(store).state == ReviewState.SUBMITTED
    claimed = state(store, claimed=ReviewStatus.APPROVED)
    assert claimed.status == ReviewStatus.SUBMITTED and claimed.unsupported_claim
    assert "front matter says approved" in claimed.note
    assert state(store, claimed=ReviewStatus.UNDER_REVIEW).status == ReviewStatus.SUBMITTED


def test_the_latest_decision_on_the_current_content_rules(store):
    store.append("a", A, REV, Decision.START_REVIEW)
    assert state(store).state == ReviewState.UNDER_REVIEW and state(store).status == ReviewStatus.UNDER_REVIEW
    store.append("a", A, REV, Decision.REQUEST_CHANGES, "cite the 2024 guideline")
    assert state(store).state == ReviewState.CHANGES_REQUESTED and state(store).status == ReviewStatus.UNDER_REVIEW
    store.append("a", A, REV, Decision.APPROVE)
    s = state(store)
    assert s.approved and s.status == ReviewStatus.APPROVED
    assert s.note == f"Approved by Dr Rhea Viewer (MD, haematology) on {dt.datetime.now(dt.UTC).date().isoformat()}"
    store.append("a", A, REV, Decision.REQUEST_CHANGES, "second thoughts")
    assert not state(store).approved, "approved only if the latest decision is an approval"


def test_an_approval_applies_to_the_exact_content_it_reviewed(store):
    store.append("a", A, REV, Decision.APPROVE)
    assert state(store, A).approved
    changed = state(store, B)
    assert changed.state == ReviewState.APPROVED_VERSION_CHANGED and changed.status != ReviewStatus.APPROVED
    assert changed.label == "Approved version changed, pending re-review"
    assert changed.note.startswith("Approved version changed, pending re-review")
    assert changed.last_approval.content_sha256 == A
    store.append("a", B, REV, Decision.START_REVIEW)
    assert state(store, B).state == ReviewState.UNDER_REVIEW
    store.append("a", B, REV, Decision.APPROVE)
    assert state(store, B).approved and not state(store, A).approved


def test_retired_is_not_approved(store):
    store.append("a", A, REV, Decision.APPROVE)
    store.append("a", A, EDITOR, Decision.RETIRE, "superseded by a newer article")
    s = state(store)
    assert s.state == ReviewState.RETIRED and not s.approved and "superseded" in s.note


def test_the_log_is_append_only_even_from_sql(sqlite_store):
    store = sqlite_store
    store.append("a", A, REV, Decision.APPROVE, "ok")
    store.remember_content("a", b"version one")
    store.observe([("a", A)])
    db = sqlite3.connect(store.path)
    refused = [
        f"UPDATE reviews SET decision = 'approve', content_sha256 = '{B}'",
        "UPDATE reviews SET comment = 'changed'",
        "DELETE FROM reviews",
        "INSERT OR REPLACE INTO reviews (seq, article_id, content_sha256, reviewer, reviewer_name, reviewer_role, decided_at, decision)"
        f" VALUES (1, 'a', '{B}', 'x', 'X', 'reviewer', '2020-01-01', 'approve')",
        "UPDATE contents SET body = x'00'",
        "DELETE FROM contents",
        "UPDATE versions SET first_seen = '2000-01-01'",
        "DELETE FROM versions",
    ]
    for sql in refused:
        with pytest.raises(sqlite3.DatabaseError, match="cannot|append-only"):
            db.execute(sql)
    # A second copy of a stored version is ignored: the first stays.
    db.execute("INSERT OR REPLACE INTO contents (sha256, article_id, body, stored_at) VALUES (?, 'a', x'00', 'now')", (A,))
    db.commit()
    [line] = store.history("a")
    assert (line.decision, line.content_sha256, line.comment) == (Decision.APPROVE, A, "ok")
    assert store.content(A) == b"version one" and len(store.versions("a")) == 1


def test_no_store_method_changes_or_removes_a_line():
    names = {n for n in dir(ReviewStore) if not n.startswith("_")}
    assert not {n for n in names if any(w in n for w in ("update", "delete", "remove", "edit", "replace", "set", "clear"))}


def test_rules_for_recording(store):
    record_decision(store, article(), REV, Decision.START_REVIEW, A)
    with pytest.raises(ReviewRefused) as info:
        record_decision(store, article(), EDITOR, Decision.APPROVE, A)
    assert info.value.status == 403 and "an editor may not approve" in info.value.message
    with pytest.raises(ReviewRefused) as info:
        record_decision(store, article(authors=("rev",)), REV, Decision.APPROVE, A)
    assert info.value.status == 403 and "author" in info.value.message
    for spelled in ("Rev", " REV "):  # an author cannot slip past by spelling their name differently
        with pytest.raises(ReviewRefused) as info:
            record_decision(store, article(authors=(spelled,)), REV, Decision.APPROVE, A)
        assert info.value.status == 403 and "author" in info.value.message
    with pytest.raises(ReviewRefused) as info:
        record_decision(store, article(sha=B), REV, Decision.APPROVE, A)
    assert info.value.status == 409 and "not the current content" in info.value.message
    retracted = Reference(1, EvidenceKind.RESEARCH, "A retracted trial", "J", notices=(Notice(NoticeType.RETRACTED),))
    with pytest.raises(ReviewRefused) as info:
        record_decision(store, article(references=[retracted]), REV, Decision.APPROVE, A)
    assert info.value.status == 409 and "retracted" in info.value.message and "A retracted trial" in info.value.message
    with pytest.raises(ReviewRefused) as info:
        record_decision(store, article(), REV, Decision.REQUEST_CHANGES, A, "  ")
    assert info.value.status == 422
    assert [h.decision for h in store.history("a")] == [Decision.START_REVIEW], "refused decisions leave no line"
    record_decision(store, article(), REV, Decision.APPROVE, A, body=b"version one")
    assert store.content(A) == b"version one"


def test_book_recomputes_only_when_the_log_changes(store):
    articles = {"a": article()}
    book = ReviewBook(store)
    first = book.statuses(articles)
    assert book.statuses(articles) is first, "cached while the log is unchanged"
    ReviewStore(store.path or store.db.url).append("a", A, REV, Decision.APPROVE)  # another connection, as another process would
    assert book.statuses(articles)["a"].approved
    assert [v.sha256 for v in store.versions("a")] == [A], "the versions served are noted"
    assert not ReviewBook().statuses(articles)["a"].approved, "without a log nothing is approved"


def test_authors_are_a_list_of_account_names_in_the_front_matter(tmp_path):
    good = tmp_path / "good.md"
    good.write_text(article_text("g", "Q?", MICRO_BODY, extra="authors: [ada, bob]\n"))
    assert parse_article(good).authors == ("ada", "bob")
    bad = tmp_path / "bad.md"
    bad.write_text(article_text("b", "Q?", MICRO_BODY, extra="authors: ada\n"))
    with pytest.raises(ArticleInvalid, match="authors must be a list of account names"):
        parse_article(bad)


def test_nothing_in_the_default_corpus_is_approved_by_the_project():
    import subprocess
    from pathlib import Path

    from indexer.articles import load_corpus

    repo = Path(__file__).resolve().parent.parent
    articles = load_corpus([repo / "corpus"]).articles
    assert articles and all(a.review_status != ReviewStatus.APPROVED for a in articles), "no front matter claims approval"
    records = {a.id: ArticleRecord(a.id, a.title, a.review_status, a.last_updated, a.audience, a.specialty, (), (), (), a.content_sha256, a.path.name, {})
               for a in articles}
    assert not any(r.approved for r in ReviewBook().statuses(records).values())
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert not [f for f in tracked if f.endswith((".sqlite", ".db"))], "the project ships no review log or accounts"


@pytest.mark.postgres
def test_the_log_is_append_only_even_from_sql_in_postgres(postgres_url):
    import psycopg

    from pg_server import new_database

    url = new_database(postgres_url)
    store = ReviewStore(url)
    store.append("a", A, REV, Decision.APPROVE, "ok")
    store.remember_content("a", b"version one")
    store.observe([("a", A)])
    refused = [
        f"UPDATE reviews SET decision = 'approve', content_sha256 = '{B}'",
        "UPDATE reviews SET comment = 'changed'",
        "DELETE FROM reviews",
        "TRUNCATE reviews",
        "INSERT INTO reviews (seq, article_id, content_sha256, reviewer, reviewer_name, reviewer_role, decided_at, decision) OVERRIDING SYSTEM VALUE"
        f" VALUES (1, 'a', '{B}', 'x', 'X', 'reviewer', '2020-01-01', 'approve') ON CONFLICT (seq) DO UPDATE SET content_sha256 = EXCLUDED.content_sha256",
        "UPDATE contents SET body = '\\x00'",
        "DELETE FROM contents",
        "TRUNCATE contents",
        "UPDATE versions SET first_seen = '2000-01-01'",
        "DELETE FROM versions",
        "TRUNCATE versions",
    ]
    with psycopg.connect(url, autocommit=True) as db:
        for sql in refused:
            with pytest.raises(psycopg.IntegrityError, match="cannot|append-only"):
                db.execute(sql)
        # A second copy of a stored version is ignored: the first stays.
        db.execute("INSERT INTO contents (sha256, article_id, body, stored_at) VALUES (%s, 'a', '\\x00', 'now')", (A,))
    [line] = store.history("a")
    assert (line.decision, line.content_sha256, line.comment) == (Decision.APPROVE, A, "ok")
    assert store.content(A) == b"version one" and len(store.versions("a")) == 1


# ---------------------------------------------------------------- PostgreSQL down


def _closed_port_url() -> str:
    """A PostgreSQL URL at a local port nothing listens on (refused at once: no server needed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://medkb@127.0.0.1:{port}/medkb"


def test_a_database_that_is_down_fails_after_the_connect_timeout_not_the_lock_timeout(monkeypatch, capsys):
    """The review log's and the accounts' lock timeout (10 s) is for locks: waiting for a connection
    to a database that is down ends after MEDKB_DB_CONNECT_TIMEOUT, so searches get their 503 sooner.
    The bounds below are generous (half the lock timeout); the wait is about the connect timeout."""
    import time
    from types import SimpleNamespace

    import psycopg

    from medkb.cli import main
    from medkb.settings import SettingError, Settings
    from retrieval.stores import open_database
    from retrieval.stores.postgres import PostgresDatabase
    from server.reviews import attach

    url = _closed_port_url()
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):  # psycopg_pool.PoolTimeout: the server answers 503
            ReviewStore(url, timeout=30, connect_timeout=1)
        assert time.monotonic() - started < 15
        # The server and the command line open the review log and the accounts with the setting
        # (their lock timeout stays 10 s): MEDKB_DB_CONNECT_TIMEOUT reaches the database layer.
        import retrieval.accounts
        import retrieval.reviews

        asked: list[tuple[str, float]] = []

        def recording(where, **kwargs):
            asked.append((kwargs["name"], kwargs.get("connect_timeout")))
            return open_database(where, **kwargs)

        for module in (retrieval.reviews, retrieval.accounts):
            monkeypatch.setattr(module, "open_database", recording)
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            attach(SimpleNamespace(state=SimpleNamespace()), Settings(backend="postgres", database_url=url, db_connect_timeout=1))
        assert time.monotonic() - started < 5 and asked == [("reviews", 1)]
        for name, value in {"MEDKB_BACKEND": "postgres", "MEDKB_DATABASE_URL": url, "MEDKB_DB_CONNECT_TIMEOUT": "1"}.items():
            monkeypatch.setenv(name, value)
        started = time.monotonic()
        assert main(["users", "list"]) == 2  # one line, exit 2
        assert time.monotonic() - started < 5 and asked[-1] == ("accounts", 1) and "account store" in capsys.readouterr().err
    finally:
        PostgresDatabase(url, "reviews").close()  # stop the pool's attempts to connect
    with pytest.raises(SettingError, match="MEDKB_DB_CONNECT_TIMEOUT"):
        Settings.from_env({"MEDKB_DB_CONNECT_TIMEOUT": "0"})

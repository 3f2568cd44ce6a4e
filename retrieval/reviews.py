"""The review log and the review status derived from it.

An article's review status is never typed by its author: it is computed from an
append-only log of reviewers' decisions and the article's current content. Every
decision names the SHA-256 of the exact bytes reviewed, so an approval applies to that
content only; once the file changes (and is re-indexed), the article shows "approved
version changed, pending re-review" until it is approved again.

The log lives in SQLite beside the index (`MEDKB_REVIEWS_DB`), or in PostgreSQL shared by
every replica (MEDKB_BACKEND=postgres), outside the embedded chunks, so a decision shows in search and answers at once without re-embedding:
`ReviewBook` derives every article's status from the log and caches it until the log
changes (a cheap `max(seq)` check per call).

Tables (all append-only; triggers refuse UPDATE and DELETE (and, in PostgreSQL, TRUNCATE),
and a re-insert of an existing row):

    reviews   seq, article_id, content_sha256, reviewer, reviewer_name,
              reviewer_credentials, reviewer_role, decided_at (UTC ISO 8601), decision, comment
    contents  sha256 -> the article file's bytes (for diffs against the approved version)
    versions  (article_id, sha256) -> first_seen: when each version was first indexed or served
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.index_store import ArticleRecord
from indexer.vocabulary import ReviewStatus
from retrieval.stores import CONNECT_TIMEOUT, Connection, Database, Schema, open_database

log = logging.getLogger("medkb.reviews")


class Decision(enum.StrEnum):
    """What a reviewer decided about one version of an article."""

    START_REVIEW = "start_review"
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    RETIRE = "retire"

    @property
    def label(self) -> str:
        return _DECISION_LABELS[self]


_DECISION_LABELS = {Decision.START_REVIEW: "Started review", Decision.APPROVE: "Approved",
                    Decision.REQUEST_CHANGES: "Requested changes", Decision.RETIRE: "Retired"}

# Which decisions each role may record. Clinical approval is a reviewer's (or an admin's);
# an editor moves articles into review and retires them.
ROLE_DECISIONS: dict[str, frozenset[Decision]] = {
    "reviewer": frozenset({Decision.START_REVIEW, Decision.APPROVE, Decision.REQUEST_CHANGES}),
    "editor": frozenset({Decision.START_REVIEW, Decision.RETIRE}),
    "admin": frozenset(Decision),
}
# Decisions that must say why.
NEEDS_COMMENT = frozenset({Decision.REQUEST_CHANGES, Decision.RETIRE})
MAX_COMMENT_CHARS = 4000


class ReviewState(enum.StrEnum):
    """The derived state of an article; `status` is the three-valued ReviewStatus that
    badges and filters use."""

    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    APPROVED_VERSION_CHANGED = "approved_version_changed"
    RETIRED = "retired"

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]

    @property
    def status(self) -> ReviewStatus:
        return _STATE_STATUS[self]


_STATE_LABELS = {
    ReviewState.SUBMITTED: "Submitted",
    ReviewState.UNDER_REVIEW: "Under review",
    ReviewState.CHANGES_REQUESTED: "Changes requested",
    ReviewState.APPROVED: "Approved",
    ReviewState.APPROVED_VERSION_CHANGED: "Approved version changed, pending re-review",
    ReviewState.RETIRED: "Retired",
}
_STATE_STATUS = {
    ReviewState.SUBMITTED: ReviewStatus.SUBMITTED,
    ReviewState.UNDER_REVIEW: ReviewStatus.UNDER_REVIEW,
    ReviewState.CHANGES_REQUESTED: ReviewStatus.UNDER_REVIEW,
    ReviewState.APPROVED: ReviewStatus.APPROVED,
    ReviewState.APPROVED_VERSION_CHANGED: ReviewStatus.SUBMITTED,
    ReviewState.RETIRED: ReviewStatus.SUBMITTED,
}


@dataclass(frozen=True)
class Reviewer:
    """Who decided, as they were when they decided (name and credentials are copied into
    the log, so a later change to the account does not rewrite history)."""

    name: str  # account name
    display_name: str
    credentials: str = ""
    role: str = "reviewer"

    @property
    def signature(self) -> str:
        """"Dr Ada Byron (MD, haematology)", or the name alone without credentials."""
        return f"{self.display_name} ({self.credentials})" if self.credentials else self.display_name


@dataclass(frozen=True)
class ReviewRecord:
    """One line of the log."""

    seq: int
    article_id: str
    content_sha256: str
    reviewer: Reviewer
    decided_at: dt.datetime
    decision: Decision
    comment: str


@dataclass(frozen=True)
class ArticleReview:
    """An article's review status, derived from its log and its current content.

    `note` says who approved it and when ("Approved by NAME (credentials) on DATE") or
    why it is pending. `decision` is the log line the state rests on (None when nothing
    in the log concerns the article); `last_approval` the latest approval of any version.
    `unsupported_claim` is set when the front matter says approved but no review record
    approves this content."""

    article_id: str
    content_sha256: str
    state: ReviewState
    note: str
    decision: ReviewRecord | None = None
    last_approval: ReviewRecord | None = None
    claimed: ReviewStatus = ReviewStatus.SUBMITTED
    unsupported_claim: bool = False

    @property
    def status(self) -> ReviewStatus:
        return self.state.status

    @property
    def approved(self) -> bool:
        return self.state == ReviewState.APPROVED

    @property
    def label(self) -> str:
        return self.state.label

    @property
    def awaiting_review(self) -> bool:
        """True for what the review queue lists: not approved and not retired."""
        return self.state not in (ReviewState.APPROVED, ReviewState.RETIRED)


def _day(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).date().isoformat()


def derive(article_id: str, content_sha256: str, history: list[ReviewRecord], claimed: ReviewStatus = ReviewStatus.SUBMITTED) -> ArticleReview:
    """The review state of an article whose current content hashes to `content_sha256`,
    from its log lines (oldest first). The latest decision rules: approved only if it is an
    approval of exactly this content."""
    approvals = [r for r in history if r.decision == Decision.APPROVE]
    last_approval = approvals[-1] if approvals else None
    common = dict(article_id=article_id, content_sha256=content_sha256, last_approval=last_approval, claimed=claimed)
    latest = history[-1] if history else None
    if latest is None:
        unsupported = claimed == ReviewStatus.APPROVED
        note = "Pending: submitted, not yet reviewed by a clinician"
        if unsupported:
            note += " (its front matter says approved, but no review record approves this content)"
        return ArticleReview(state=ReviewState.SUBMITTED, note=note, unsupported_claim=unsupported, **common)
    who, when = latest.reviewer.signature, _day(latest.decided_at)
    unsupported = claimed == ReviewStatus.APPROVED
    if latest.decision == Decision.RETIRE:
        return ArticleReview(state=ReviewState.RETIRED, note=f"Retired by {who} on {when}: {latest.comment}".rstrip(": "),
                             decision=latest, unsupported_claim=unsupported, **common)
    if latest.content_sha256 == content_sha256:
        if latest.decision == Decision.APPROVE:
            return ArticleReview(state=ReviewState.APPROVED, note=f"Approved by {who} on {when}", decision=latest, **common)
        if latest.decision == Decision.START_REVIEW:
            return ArticleReview(state=ReviewState.UNDER_REVIEW, note=f"Pending: under review by {who} since {when}",
                                 decision=latest, unsupported_claim=unsupported, **common)
        return ArticleReview(state=ReviewState.CHANGES_REQUESTED, note=f"Pending: changes requested by {who} on {when}",
                             decision=latest, unsupported_claim=unsupported, **common)
    if last_approval is not None:
        by, on = last_approval.reviewer.signature, _day(last_approval.decided_at)
        return ArticleReview(state=ReviewState.APPROVED_VERSION_CHANGED,
                             note=f"Approved version changed, pending re-review (an earlier version was approved by {by} on {on})",
                             decision=last_approval, unsupported_claim=unsupported, **common)
    return ArticleReview(state=ReviewState.SUBMITTED, note=f"Pending: changed since {who} reviewed it on {when}; awaiting review",
                         decision=latest, unsupported_claim=unsupported, **common)


# ---------------------------------------------------------------- the rules for recording a decision


class ReviewRefused(Exception):
    """A decision that may not be recorded. `status` is the HTTP status that fits:
    403 (this person may not), 409 (not on this content, or not while it cites a retracted
    source), 422 (the request itself is incomplete)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def check_decision(record: ArticleRecord, reviewer: Reviewer, decision: Decision, content_sha256: str, comment: str) -> None:
    """Raise ReviewRefused unless `reviewer` may record `decision` on this content now."""
    if decision not in ROLE_DECISIONS.get(reviewer.role, frozenset()):
        allowed = sorted(role for role, ds in ROLE_DECISIONS.items() if decision in ds)
        article = "an" if reviewer.role[:1] in "aeiou" else "a"
        raise ReviewRefused(403, "forbidden", f"{article} {reviewer.role} may not {decision.value.replace('_', ' ')}; that needs the role {' or '.join(allowed)}")
    # Account names are compared without case or surrounding spaces: "Ada" in an article's
    # authors is the account "ada", so nobody approves their own article by spelling it differently.
    if decision == Decision.APPROVE and reviewer.name.strip().casefold() in {a.strip().casefold() for a in record.authors}:
        raise ReviewRefused(403, "forbidden", f"{reviewer.name} is an author of {record.id!r} and cannot approve it; another reviewer must")
    if content_sha256 != record.content_sha256:
        raise ReviewRefused(409, "conflict", f"the content reviewed (sha256 {content_sha256[:12]}…) is not the current content of {record.id!r} "
                                             f"(sha256 {record.content_sha256[:12]}…); reload the article and review what it says now")
    if decision == Decision.APPROVE:
        retracted = [r for r in record.references if r.retracted]
        if retracted:
            names = "; ".join(f"[{r.id}] {r.title}" for r in retracted)
            raise ReviewRefused(409, "cites_retracted", f"{record.id!r} cites a retracted source and cannot be approved until it no longer does: {names}")
    if decision in NEEDS_COMMENT and not comment.strip():
        raise ReviewRefused(422, "invalid_request", f"comment: say why ({decision.label.lower()} needs a comment)")
    if len(comment) > MAX_COMMENT_CHARS:
        raise ReviewRefused(422, "invalid_request", f"comment: at most {MAX_COMMENT_CHARS} characters")


# ---------------------------------------------------------------- the store

# What may never change, and the message each refusal gives: the review log, the article versions
# that reviews point at, and the history of when each version was first seen.
APPEND_ONLY = {
    "reviews": ("the review log is append-only: a review cannot be changed", "the review log is append-only: a review cannot be deleted",
                "the review log is append-only: it cannot be truncated"),
    "contents": ("stored article versions cannot be changed", "stored article versions cannot be deleted", "stored article versions cannot be deleted"),
    "versions": ("article version history cannot be changed", "article version history cannot be deleted", "article version history cannot be deleted"),
}
# An insert of a row these tables already hold is dropped, so the first copy stays as it was.
KEEP_FIRST = {"contents": "sha256 = NEW.sha256", "versions": "article_id = NEW.article_id AND sha256 = NEW.sha256"}


def _sqlite_guards(table: str) -> str:
    """SQLite triggers refusing UPDATE and DELETE on `table` (APPEND_ONLY), and dropping a repeated insert (KEEP_FIRST)."""
    changed, deleted, _ = APPEND_ONLY[table]
    sql = f"""CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, '{changed}'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
    BEGIN SELECT RAISE(ABORT, '{deleted}'); END;
"""
    if table in KEEP_FIRST:
        sql += f"""CREATE TRIGGER IF NOT EXISTS {table}_keep_first BEFORE INSERT ON {table}
    WHEN EXISTS (SELECT 1 FROM {table} WHERE {KEEP_FIRST[table]})
    BEGIN SELECT RAISE(IGNORE); END;
"""
    return sql


def _postgres_guards(table: str) -> str:
    """The same in PostgreSQL, which also refuses TRUNCATE (a way round row triggers)."""
    changed, deleted, truncated = APPEND_ONLY[table]
    sql = ""
    if table in KEEP_FIRST:
        sql += f"""CREATE OR REPLACE FUNCTION medkb_{table}_keep_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {table} WHERE {KEEP_FIRST[table]}) THEN RETURN NULL; END IF;
    RETURN NEW;
END $$;
"""
    sql += f"""CREATE OR REPLACE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION medkb_refuse('{changed}');
CREATE OR REPLACE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION medkb_refuse('{deleted}');
CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION medkb_refuse('{truncated}');
"""
    if table in KEEP_FIRST:
        sql += f"""CREATE OR REPLACE TRIGGER {table}_keep_first BEFORE INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION medkb_{table}_keep_first();
"""
    return sql


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id TEXT NOT NULL CHECK (length(article_id) > 0),
    content_sha256 TEXT NOT NULL CHECK (length(content_sha256) = 64 AND content_sha256 NOT GLOB '*[^0-9a-f]*'),
    reviewer TEXT NOT NULL CHECK (length(reviewer) > 0),
    reviewer_name TEXT NOT NULL,
    reviewer_credentials TEXT NOT NULL DEFAULT '',
    reviewer_role TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('start_review', 'approve', 'request_changes', 'retire')),
    comment TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reviews_by_article ON reviews(article_id, seq);
""" + _sqlite_guards("reviews") + """CREATE TRIGGER IF NOT EXISTS reviews_no_replace BEFORE INSERT ON reviews
    WHEN NEW.seq IS NOT NULL AND EXISTS (SELECT 1 FROM reviews WHERE seq = NEW.seq)
    BEGIN SELECT RAISE(ABORT, 'the review log is append-only: a review cannot be replaced'); END;

CREATE TABLE IF NOT EXISTS contents (
    sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    article_id TEXT NOT NULL,
    body BLOB NOT NULL,
    stored_at TEXT NOT NULL
);
""" + _sqlite_guards("contents") + """
CREATE TABLE IF NOT EXISTS versions (
    article_id TEXT NOT NULL,
    sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
    first_seen TEXT NOT NULL,
    PRIMARY KEY (article_id, sha256)
);
""" + _sqlite_guards("versions")

POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    article_id TEXT NOT NULL CHECK (length(article_id) > 0),
    content_sha256 TEXT NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    reviewer TEXT NOT NULL CHECK (length(reviewer) > 0),
    reviewer_name TEXT NOT NULL,
    reviewer_credentials TEXT NOT NULL DEFAULT '',
    reviewer_role TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('start_review', 'approve', 'request_changes', 'retire')),
    comment TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reviews_by_article ON reviews(article_id, seq);

CREATE OR REPLACE FUNCTION medkb_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END $$;
""" + _postgres_guards("reviews") + """
CREATE TABLE IF NOT EXISTS contents (
    sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    article_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    stored_at TEXT NOT NULL
);
""" + _postgres_guards("contents") + """
CREATE TABLE IF NOT EXISTS versions (
    article_id TEXT NOT NULL,
    sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
    first_seen TEXT NOT NULL,
    PRIMARY KEY (article_id, sha256)
);
""" + _postgres_guards("versions")
SCHEMA = Schema(sqlite=SQLITE_SCHEMA, postgres=POSTGRES_SCHEMA)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Version:
    article_id: str
    sha256: str
    first_seen: dt.datetime


class ReviewStore:
    """The append-only review log in a SQLite file (`where` a path) or PostgreSQL (`where` a
    postgresql:// URL, or a Database from retrieval.stores). There is no method that changes
    or removes a line, and the database's triggers refuse it from anywhere else. Lock waits
    last at most `timeout` seconds, waits for a PostgreSQL connection at most `connect_timeout`
    (MEDKB_DB_CONNECT_TIMEOUT); `clock` gives aware UTC datetimes. Storage failures raise
    the driver's errors (`self.db.Error`)."""

    def __init__(self, where: Path | str | Database, clock=_now, timeout: float = 10.0, connect_timeout: float = CONNECT_TIMEOUT):
        self.db = open_database(where, name="reviews", timeout=timeout, keep_open=True, connect_timeout=connect_timeout)
        self.path = self.db.path  # None on PostgreSQL
        self.clock = clock
        with self.db.connect() as db:
            db.script(SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.db.connect() as db:
            return db.execute(sql, params).fetchall()

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A write transaction (committed on success, rolled back on any exception)."""
        with self.db.transaction(write=True) as db:
            yield db

    def close(self) -> None:
        """Release the connections held for the log (a later call reopens them)."""
        self.db.close()

    # -- the log

    def append(self, article_id: str, content_sha256: str, reviewer: Reviewer, decision: Decision, comment: str = "") -> ReviewRecord:
        """Add one line to the log and return it. Nothing else ever writes to it."""
        decided_at = self.clock()
        with self._connect() as db:
            [(seq,)] = db.execute(
                "INSERT INTO reviews (article_id, content_sha256, reviewer, reviewer_name, reviewer_credentials, reviewer_role, decided_at, decision, comment)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                (article_id, content_sha256, reviewer.name, reviewer.display_name, reviewer.credentials, reviewer.role,
                 decided_at.isoformat(), Decision(decision).value, comment),
            ).fetchall()
        return ReviewRecord(seq, article_id, content_sha256, reviewer, decided_at, Decision(decision), comment)

    def version(self) -> int:
        """Changes whenever a line is appended (by this process or another)."""
        return self._read("SELECT coalesce(max(seq), 0) FROM reviews")[0][0]

    def history(self, article_id: str) -> list[ReviewRecord]:
        """The article's log lines, oldest first."""
        rows = self._read("SELECT * FROM reviews WHERE article_id = ? ORDER BY seq", (article_id,))
        return [_record(row) for row in rows]

    def records(self, since: dt.datetime | None = None) -> list[ReviewRecord]:
        """Every line (or those decided at or after `since`), oldest first."""
        if since is None:
            rows = self._read("SELECT * FROM reviews ORDER BY seq")
        else:
            rows = self._read("SELECT * FROM reviews WHERE decided_at >= ? ORDER BY seq", (since.astimezone(dt.UTC).isoformat(),))
        return [_record(row) for row in rows]

    # -- article versions

    def remember_content(self, article_id: str, body: bytes) -> str:
        """Keep an article version's bytes (once per hash); returns the hash."""
        digest = sha256_hex(body)
        with self._connect() as db:
            db.execute("INSERT INTO contents (sha256, article_id, body, stored_at) VALUES (?, ?, ?, ?)",
                       (digest, article_id, body, self.clock().isoformat()))
        return digest

    def content(self, sha256: str) -> bytes | None:
        rows = self._read("SELECT body FROM contents WHERE sha256 = ?", (sha256,))
        return bytes(rows[0][0]) if rows else None

    def observe(self, versions: Iterable[tuple[str, str]]) -> None:
        """Note when each (article id, content hash) was first seen; known ones are kept as they were."""
        now = self.clock().isoformat()
        with self._connect() as db:
            db.executemany("INSERT INTO versions (article_id, sha256, first_seen) VALUES (?, ?, ?)", [(a, s, now) for a, s in versions])

    def versions(self, article_id: str | None = None) -> list[Version]:
        """Versions first seen, oldest first (of one article, or all)."""
        if article_id is None:
            rows = self._read("SELECT article_id, sha256, first_seen FROM versions ORDER BY first_seen, article_id")
        else:
            rows = self._read("SELECT article_id, sha256, first_seen FROM versions WHERE article_id = ? ORDER BY first_seen", (article_id,))
        return [Version(a, s, dt.datetime.fromisoformat(t)) for a, s, t in rows]


def _record(row: tuple) -> ReviewRecord:
    seq, article_id, sha, reviewer, name, credentials, role, decided_at, decision, comment = row
    return ReviewRecord(seq, article_id, sha, Reviewer(reviewer, name, credentials, role), dt.datetime.fromisoformat(decided_at), Decision(decision), comment)


# ---------------------------------------------------------------- derived statuses, cached


class ReviewBook:
    """Every indexed article's derived review status, recomputed only when the log changes.

    Without a store (evaluations, tests of ranking) the log is empty: every article is
    submitted, whatever its front matter says."""

    def __init__(self, store: ReviewStore | None = None):
        self.store = store
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._articles: Mapping[str, ArticleRecord] | None = None  # held so its id() stays unique
        self._statuses: dict[str, ArticleReview] = {}
        self._observed: set[int] = set()

    def statuses(self, articles: Mapping[str, ArticleRecord]) -> dict[str, ArticleReview]:
        """{article id: ArticleReview} for these articles, as the log says now."""
        version = self.store.version() if self.store is not None else 0
        key = (id(articles), version)
        if key == self._key and self._articles is articles:
            return self._statuses
        with self._lock:
            if key == self._key and self._articles is articles:
                return self._statuses
            if self.store is not None and id(articles) not in self._observed:
                try:
                    self.store.observe((a.id, a.content_sha256) for a in articles.values())
                except self.store.db.Error as exc:  # a read-only log still answers
                    log.warning("could not note article versions in %s: %s", self.store.db.where, exc)
                self._observed = {id(articles)}
            histories: dict[str, list[ReviewRecord]] = {}
            if self.store is not None:
                for record in self.store.records():
                    histories.setdefault(record.article_id, []).append(record)
            statuses = {a.id: derive(a.id, a.content_sha256, histories.get(a.id, []), a.review_status) for a in articles.values()}
            self._statuses, self._articles, self._key = statuses, articles, key
            return statuses

    def invalidate(self) -> None:
        with self._lock:
            self._key = None


def record_decision(store: ReviewStore, record: ArticleRecord, reviewer: Reviewer, decision: Decision, content_sha256: str,
                    comment: str = "", body: bytes | None = None) -> ReviewRecord:
    """Check the rules, keep the reviewed content (when its bytes are at hand and match),
    and append the decision. Raises ReviewRefused."""
    decision = Decision(decision)
    comment = comment.strip()
    check_decision(record, reviewer, decision, content_sha256, comment)
    if body is not None and sha256_hex(body) == content_sha256:
        store.remember_content(record.id, body)
    return store.append(record.id, content_sha256, reviewer, decision, comment)


def find_article_bytes(record: ArticleRecord, dirs: Iterable[Path]) -> bytes | None:
    """The bytes of the article's file, looked up by name under `dirs`, only if they are
    exactly the indexed content (same SHA-256)."""
    for d in dirs:
        d = Path(d)
        candidates = [d] if d.is_file() else (sorted(d.rglob(record.path)) if d.is_dir() else [])
        for path in candidates:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if sha256_hex(data) == record.content_sha256:
                return data
    return None


def unsupported_claims(statuses: Mapping[str, ArticleReview]) -> list[ArticleReview]:
    """Articles whose front matter says approved while no review record approves their content."""
    return sorted((r for r in statuses.values() if r.unsupported_claim), key=lambda r: r.article_id)

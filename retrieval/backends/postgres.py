"""The PostgreSQL backend: chunks, vectors and BM25 statistics in PostgreSQL with pgvector;
builds published by switching one row in one transaction.

Layout of a database (created on first use; `CREATE EXTENSION vector` needs the extension
installed on the server, which pgserver's and most managed PostgreSQL's are):

    medkb_builds       one row per build: id, its schema, state (staging | ready), the
                       manifest (JSON), BM25 statistics (documents, mean length), times
    medkb_published    exactly one row: the id of the published build
    medkb_b_<id>.*     one schema per build:
        chunks    idx (the chunk's position, 0..n-1), chunk id, article id, the filter
                  columns (audience, evidence kinds, last updated, cites a retracted source),
                  BM25 length, the chunk as JSON, and its vector (pgvector, HNSW index, inner product)
        postings  (term, idx, tf, doc_len): BM25's term frequencies, one row per term and chunk
        terms     (term, df, idf): document frequency and Lucene IDF, computed when the build is finished
        sections  the question-to-heading list's section texts and vectors
        articles  the articles' front matter as JSON

Writing: `PostgresStore.stage` opens a build (empty, or a copy of the published one),
`upsert_chunks` / `delete_chunks` / `put_articles` / `put_sections` change it, `finish`
renumbers chunks 0..n-1, computes the BM25 statistics and builds the HNSW index, and
`publish` points `medkb_published` at it in one transaction: a reader that reads the pointer
gets the old build or the new one, never a mix, because a build's schema is complete before
it is published and is never changed afterwards. The `keep` newest builds stay, and so does
any build published in the last GRACE_SECONDS (replicas still on it finish its requests and
swap); older schemas are dropped. One writer at a time
(a PostgreSQL advisory lock).

Searching: `PostgresBackend` answers the dense list with the HNSW index (`hnsw.ef_search`
candidates, at least the depth asked for; a filtered search that the index leaves short is
answered exactly by a scan), and the lexical list by BM25 computed in SQL from `postings`
and `terms`, with the request's filters as SQL conditions on the chunk columns.

A server replica reads the published build's chunks, articles, sections and term
statistics into memory once per build (`load_published`): query understanding, the
heading list and the learned ranker's features need them; the two candidate lists and
every candidate's scores come from PostgreSQL.

HNSW parameters: m = 16 and ef_construction = 64 are pgvector's defaults (pgvector README,
"HNSW"); ef_search = 200 by default here (MEDKB_PG_EF_SEARCH) so a depth-100 candidate list
comes from twice as many explored neighbours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.chunking import Chunk
from indexer.index_store import ArticleRecord, IndexManifest, IndexMismatch, IndexMissing, LoadedIndex, SectionVectors
from indexer.lexical import term_counts
from indexer.vocabulary import Audience
from retrieval.backends.base import Ranked, SearchBackend, Selection

HNSW_M = 16  # pgvector's default
HNSW_EF_CONSTRUCTION = 64  # pgvector's default
EF_SEARCH = 200
POOL_WAIT_SECONDS = 3.0  # longest a search waits for a database connection before the server answers 503
KEEP_BUILDS = 3
GRACE_SECONDS = 600  # a build published this recently is never dropped (replicas may still serve it)
BM25_K1, BM25_B = 1.2, 0.75  # as indexer/lexical.py (Lucene's defaults)
_LOCK_KEY = 0x6D65646B62  # "medkb": the advisory lock one writer holds

CONTROL_DDL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS medkb_builds (
    id text PRIMARY KEY,
    schema_name text NOT NULL UNIQUE,
    state text NOT NULL CHECK (state IN ('staging', 'ready')),
    dim int NOT NULL,
    manifest jsonb,
    n_docs int,
    avg_doc_len double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    published_at timestamptz
);
CREATE TABLE IF NOT EXISTS medkb_published (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    build_id text NOT NULL REFERENCES medkb_builds (id)
);
"""

BUILD_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.chunks (
    idx int NOT NULL,
    chunk_id text NOT NULL UNIQUE,
    article_id text NOT NULL,
    audience text NOT NULL,
    evidence_kinds text[] NOT NULL,
    last_updated date,
    cites_retracted boolean NOT NULL,
    doc_len int NOT NULL,
    data jsonb NOT NULL,
    embedding vector({dim}) NOT NULL
);
CREATE TABLE {s}.postings (term text NOT NULL, idx int NOT NULL, tf int NOT NULL, doc_len int NOT NULL);
CREATE TABLE {s}.terms (term text PRIMARY KEY, df int NOT NULL, idf double precision NOT NULL);
CREATE TABLE {s}.sections (pos int NOT NULL, id text PRIMARY KEY, text text NOT NULL, embedding vector({dim}) NOT NULL);
CREATE TABLE {s}.articles (id text PRIMARY KEY, data jsonb NOT NULL);
"""


class DatabaseProblem(IndexMissing):
    """The database cannot be reached or holds no published build; the message says what to run."""


def _connect(url: str, autocommit: bool = False):
    import psycopg
    from pgvector.psycopg import register_vector

    try:
        conn = psycopg.connect(url, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise DatabaseProblem(f"cannot connect to MEDKB_DATABASE_URL ({_redacted(url)}): {str(exc).strip()}") from None
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:  # the extension is not created yet in this database
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        if not autocommit:
            conn.commit()
        register_vector(conn)
    return conn


def _redacted(url: str) -> str:
    """The URL without its password (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _schema(build_id: str):
    from psycopg import sql

    return sql.Identifier(f"medkb_b_{build_id}")


def _sql(template: str, build_id: str, **more: Any):
    from psycopg import sql

    return sql.SQL(template).format(s=_schema(build_id), **{k: sql.Literal(v) if isinstance(v, int) else v for k, v in more.items()})


def _cites_retracted(chunk: Chunk) -> bool:
    return any(ref.retracted for ref in chunk.references)


def ensure_schema(url: str) -> None:
    """Create the extension and the control tables if they are missing (idempotent)."""
    with _connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY + 1,))
        try:
            for statement in CONTROL_DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY + 1,))


def published_build(url: str) -> str | None:
    """The id of the published build, or None when nothing is published (or no medkb tables exist)."""
    with _connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('medkb_published')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT build_id FROM medkb_published").fetchone()
        return row[0] if row else None


def published_manifest(url: str) -> dict[str, Any] | None:
    """The published build's manifest (JSON, as stored), or None when nothing is published."""
    return _published_row(url)[1]


def _published_row(url: str) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(the published build's id, its manifest as stored, its state), each None when nothing
    is published or its row is gone."""
    build_id = published_build(url)
    if build_id is None:
        return None, None, None
    with _connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT manifest, state FROM medkb_builds WHERE id = %s", (build_id,)).fetchone()
    return (build_id, *row) if row else (build_id, None, None)


def publish_if_changed(url: str, index: LoadedIndex, keep: int = KEEP_BUILDS) -> tuple[str, bool]:
    """Publish `index` (a build read from disk) into the database unless the database already
    serves that build (see `serves_build`). Returns (the published build's id, whether this
    call published it)."""
    build_id, manifest, state = _published_row(url)
    if state == "ready" and serves_build(manifest, index):
        return build_id, False
    with PostgresStore(url, keep=keep) as store:
        return store.publish_index(index), True


def serves_build(published: dict[str, Any], index: LoadedIndex) -> bool:
    """Whether a database build whose manifest (JSON, as stored) is `published` serves what
    `index` holds: the same IndexManifest.content_identity (model, encoder, precision and
    export recipe included, chunker and lexical settings, corpus fingerprint, every data file's
    checksum) and as many chunks, articles and sections. The corpus fingerprint alone names the
    model's weights, not the encoder that ran them: a build by another encoder, precision or
    recipe has the same fingerprint and other vectors. A manifest this medkb cannot read never
    matches (the build is published over it)."""
    try:
        manifest = IndexManifest.from_dict(published)
    except (KeyError, TypeError, ValueError):
        return False
    counts = (manifest.counts.chunks, manifest.counts.articles, manifest.counts.sections)
    return manifest.content_identity() == index.manifest.content_identity() \
        and counts == (len(index.chunks), len(index.articles), len(index.sections.ids))


# ---------------------------------------------------------------- writing


class PostgresStore:
    """Writes builds into one database and publishes them (see the module docstring). Use as a
    context manager, or call `close`. Holds the writer's advisory lock from `stage` to
    `publish` or `discard` (a second writer waits)."""

    def __init__(self, url: str, keep: int = KEEP_BUILDS, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION):
        ensure_schema(url)
        self.url = url
        self.keep = keep
        self.m, self.ef_construction = m, ef_construction
        self.conn = _connect(url, autocommit=True)  # every change below is inside an explicit transaction()
        self._locked = False

    def __enter__(self) -> "PostgresStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def _lock(self) -> None:
        if not self._locked:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            self._locked = True

    def _unlock(self) -> None:
        if self._locked:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
            self._locked = False

    def stage(self, dim: int, base: str | None = None) -> str:
        """A new build in staging: empty, or a copy of build `base` (e.g. the published one, to
        upsert and delete a few chunks). Returns its id (sortable by creation time)."""
        self._lock()
        build_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S%f") + uuid.uuid4().hex[:6]
        with self.conn.transaction():
            self.conn.execute("INSERT INTO medkb_builds (id, schema_name, state, dim) VALUES (%s, %s, 'staging', %s)",
                              (build_id, f"medkb_b_{build_id}", dim))
            for statement in BUILD_DDL.split(";"):
                if statement.strip():
                    self.conn.execute(_sql(statement.replace("{dim}", str(int(dim))), build_id))
            if base is not None:
                for table in ("chunks", "postings", "sections", "articles"):
                    self.conn.execute(_sql(f"INSERT INTO {{s}}.{table} SELECT * FROM {{b}}.{table}", build_id, b=_schema(base)))
        return build_id

    def upsert_chunks(self, build_id: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add chunks (with their vectors, (len(chunks), dim) float32, unit length) to a staged
        build, replacing any chunk of the same id. New chunks go after the existing ones."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        with self.conn.transaction():
            self._delete(build_id, [c.id for c in chunks])
            start = self.conn.execute(_sql("SELECT coalesce(max(idx) + 1, 0) FROM {s}.chunks", build_id)).fetchone()[0]
            with self.conn.cursor().copy(_sql("COPY {s}.chunks FROM STDIN (FORMAT BINARY)", build_id)) as copy:
                copy.set_types(["int4", "text", "text", "text", "text[]", "date", "bool", "int4", "jsonb", "vector"])
                for offset, (chunk, vector) in enumerate(zip(chunks, vectors)):
                    counts = term_counts(chunk.embed_text)[1]
                    copy.write_row((start + offset, chunk.id, chunk.article_id, str(chunk.audience), [str(k) for k in chunk.evidence_kinds],
                                    chunk.last_updated, _cites_retracted(chunk), sum(counts), chunk.to_dict(), np.asarray(vector, dtype=np.float32)))
            with self.conn.cursor().copy(_sql("COPY {s}.postings FROM STDIN (FORMAT BINARY)", build_id)) as copy:
                copy.set_types(["text", "int4", "int4", "int4"])
                for offset, chunk in enumerate(chunks):
                    terms, counts = term_counts(chunk.embed_text)
                    length = sum(counts)
                    for term, tf in zip(terms, counts):
                        copy.write_row((term, start + offset, tf, length))

    def _delete(self, build_id: str, chunk_ids: Sequence[str]) -> int:
        gone = self.conn.execute(_sql("DELETE FROM {s}.chunks WHERE chunk_id = ANY(%s) RETURNING idx", build_id), (list(chunk_ids),)).fetchall()
        if gone:
            self.conn.execute(_sql("DELETE FROM {s}.postings WHERE idx = ANY(%s)", build_id), ([r[0] for r in gone],))
        return len(gone)

    def delete_chunks(self, build_id: str, chunk_ids: Sequence[str]) -> int:
        """Remove chunks (by chunk id) from a staged build; returns how many were there."""
        with self.conn.transaction():
            return self._delete(build_id, chunk_ids)

    def put_articles(self, build_id: str, articles: Iterable[ArticleRecord]) -> None:
        """Add or replace articles' front matter in a staged build."""
        with self.conn.transaction():
            for article in articles:
                self.conn.execute(_sql("INSERT INTO {s}.articles (id, data) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET data = excluded.data", build_id),
                                  (article.id, json.dumps(article.to_dict(), ensure_ascii=False)))

    def delete_articles(self, build_id: str, article_ids: Sequence[str]) -> None:
        """Remove articles, their chunks and their sections from a staged build."""
        with self.conn.transaction():
            ids = [r[0] for r in self.conn.execute(_sql("SELECT chunk_id FROM {s}.chunks WHERE article_id = ANY(%s)", build_id), (list(article_ids),))]
            self._delete(build_id, ids)
            self.conn.execute(_sql("DELETE FROM {s}.articles WHERE id = ANY(%s)", build_id), (list(article_ids),))
            self.conn.execute(_sql("DELETE FROM {s}.sections WHERE split_part(id, '#', 1) = ANY(%s)", build_id), (list(article_ids),))

    def put_sections(self, build_id: str, sections: SectionVectors) -> None:
        """Add or replace sections (id, heading text, vector) in a staged build."""
        with self.conn.transaction():
            start = self.conn.execute(_sql("SELECT coalesce(max(pos) + 1, 0) FROM {s}.sections", build_id)).fetchone()[0]
            self.conn.execute(_sql("DELETE FROM {s}.sections WHERE id = ANY(%s)", build_id), (list(sections.ids),))
            with self.conn.cursor().copy(_sql("COPY {s}.sections FROM STDIN (FORMAT BINARY)", build_id)) as copy:
                copy.set_types(["int4", "text", "text", "vector"])
                for offset, (sid, text, vector) in enumerate(zip(sections.ids, sections.texts, sections.vectors)):
                    copy.write_row((start + offset, sid, text, np.asarray(vector, dtype=np.float32)))

    def finish(self, build_id: str, manifest: IndexManifest) -> None:
        """Make a staged build ready: chunks and sections renumbered 0..n-1 in their order, BM25
        statistics, indexes (HNSW on the vectors), the manifest with the counts as they are now."""
        with self.conn.transaction():
            for table, key in (("chunks", "idx"), ("sections", "pos")):
                self.conn.execute(_sql(f"CREATE TEMP TABLE renumber ON COMMIT DROP AS SELECT {key} AS old, row_number() OVER (ORDER BY {key}) - 1 AS new "
                                       f"FROM {{s}}.{table}", build_id))
                self.conn.execute(_sql(f"UPDATE {{s}}.{table} t SET {key} = r.new FROM renumber r WHERE t.{key} = r.old AND r.old <> r.new", build_id))
                if table == "chunks":
                    self.conn.execute(_sql("UPDATE {s}.postings p SET idx = r.new FROM renumber r WHERE p.idx = r.old AND r.old <> r.new", build_id))
                self.conn.execute("DROP TABLE renumber")
            n_docs, avg = self.conn.execute(_sql("SELECT count(*), coalesce(avg(doc_len), 0) FROM {s}.chunks", build_id)).fetchone()
            self.conn.execute(_sql("TRUNCATE {s}.terms", build_id))
            # Lucene's IDF as bm25s computes it: ln(1 + (N - df + 0.5) / (df + 0.5))
            self.conn.execute(_sql("INSERT INTO {s}.terms SELECT term, count(*), ln(1 + (%s - count(*) + 0.5) / (count(*) + 0.5)) FROM {s}.postings GROUP BY term",
                                   build_id), (n_docs,))
            self.conn.execute(_sql("ALTER TABLE {s}.chunks ADD PRIMARY KEY (idx)", build_id))
            self.conn.execute(_sql("ALTER TABLE {s}.postings ADD PRIMARY KEY (term, idx)", build_id))
            self.conn.execute(_sql("CREATE UNIQUE INDEX ON {s}.sections (pos)", build_id))
            self.conn.execute(_sql("CREATE INDEX ON {s}.chunks (article_id)", build_id))
            self.conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            self.conn.execute(_sql("CREATE INDEX ON {s}.chunks USING hnsw (embedding vector_ip_ops) WITH (m = {m}, ef_construction = {ef})", build_id,
                                   m=int(self.m), ef=int(self.ef_construction)))
            counts = dataclasses.replace(manifest.counts, chunks=int(n_docs),
                                         articles=self.conn.execute(_sql("SELECT count(*) FROM {s}.articles", build_id)).fetchone()[0],
                                         sections=self.conn.execute(_sql("SELECT count(*) FROM {s}.sections", build_id)).fetchone()[0])
            manifest = dataclasses.replace(manifest, counts=counts)
            self.conn.execute("UPDATE medkb_builds SET state = 'ready', manifest = %s, n_docs = %s, avg_doc_len = %s, finished_at = now() WHERE id = %s",
                              (json.dumps(manifest.to_dict()), n_docs, float(avg), build_id))
        with self.conn.transaction():
            for table in ("chunks", "postings", "terms", "sections", "articles"):
                self.conn.execute(_sql(f"ANALYZE {{s}}.{table}", build_id))

    def publish(self, build_id: str) -> None:
        """Point `medkb_published` at a finished build, in one transaction; then drop all but
        the `keep` newest ready builds (the published one always kept) and any abandoned staging."""
        with self.conn.transaction():
            state = self.conn.execute("SELECT state FROM medkb_builds WHERE id = %s FOR UPDATE", (build_id,)).fetchone()
            if state is None or state[0] != "ready":
                raise ValueError(f"build {build_id} is not finished; call finish() before publish()")
            self.conn.execute("INSERT INTO medkb_published (one, build_id) VALUES (true, %s) ON CONFLICT (one) DO UPDATE SET build_id = excluded.build_id",
                              (build_id,))
            self.conn.execute("UPDATE medkb_builds SET published_at = now() WHERE id = %s", (build_id,))
        self._prune(build_id)
        self._unlock()

    def discard(self, build_id: str) -> None:
        """Drop a staged build that will not be published."""
        self._drop(build_id)
        self._unlock()

    def _drop(self, build_id: str) -> None:
        with self.conn.transaction():
            self.conn.execute(_sql("DROP SCHEMA IF EXISTS {s} CASCADE", build_id))
            self.conn.execute("DELETE FROM medkb_builds WHERE id = %s", (build_id,))

    def _prune(self, published: str) -> None:
        # A build published within GRACE_SECONDS may still be served by a replica that has not
        # swapped yet (it checks every MEDKB_RELOAD_SECONDS, then loads the new build): kept too.
        rows = self.conn.execute("SELECT id, state, published_at > now() - make_interval(secs => %s) FROM medkb_builds WHERE id <> %s ORDER BY id DESC",
                                 (GRACE_SECONDS, published)).fetchall()
        ready = [r for r in rows if r[1] == "ready"]
        old = [r[0] for r in ready[max(self.keep, 1) - 1:] if not r[2]]
        staging = [r[0] for r in rows if r[1] == "staging"]
        for build_id in old + staging:
            self._drop(build_id)

    def publish_index(self, index: LoadedIndex, vectors: np.ndarray | None = None, batch: int = 5000) -> str:
        """Copy a whole build (e.g. one `medkb index` just wrote) into a new database build and
        publish it. `vectors` defaults to the build's FAISS vectors. Returns the new build's id."""
        from retrieval.backends.embedded import _flat_vectors

        vectors = _flat_vectors(index.faiss_index) if vectors is None else vectors
        build_id = self.stage(index.manifest.model.dim)
        try:
            for start in range(0, len(index.chunks), batch):
                self.upsert_chunks(build_id, index.chunks[start:start + batch], vectors[start:start + batch])
            self.put_articles(build_id, index.articles.values())
            self.put_sections(build_id, index.sections)
            self.finish(build_id, index.manifest)
        except BaseException:
            self.discard(build_id)
            raise
        self.publish(build_id)
        return build_id


# ---------------------------------------------------------------- reading


def load_published(url: str, model=None, build_id: str | None = None, reuse: LoadedIndex | None = None) -> LoadedIndex:
    """The published build (or `build_id`) read into memory as a LoadedIndex without FAISS
    (`faiss_index` is None; `directory` is postgres/<build id>): chunks, articles, sections
    and the BM25 term statistics (indexer.lexical.LexicalIndex, the same scores as the
    embedded build). `model` (indexer.embedding.ModelInfo) is checked against the manifest.
    Raises DatabaseProblem (unreachable, nothing published) or IndexMismatch."""
    from indexer.lexical import LexicalIndex

    with _connect(url) as conn:
        if build_id is None:
            build_id = published_build(url)
            if build_id is None:
                raise DatabaseProblem(f"no build is published in the database {_redacted(url)}. "
                                      "Publish one with `MEDKB_BACKEND=postgres medkb index corpus`.")
        with conn.transaction():
            row = conn.execute("SELECT manifest FROM medkb_builds WHERE id = %s AND state = 'ready'", (build_id,)).fetchone()
            if row is None:
                raise DatabaseProblem(f"build {build_id} is not in the database {_redacted(url)} (dropped, or never finished)")
            manifest = IndexManifest.from_dict(row[0])
            if model is not None:
                manifest.check_model(model)
            known = {c.id: c for c in reuse.chunks} if reuse is not None else {}
            chunks: list[Chunk] = []
            for data, in conn.execute(_sql("SELECT data FROM {s}.chunks ORDER BY idx", build_id)):
                old = known.get(data["id"])
                chunks.append(old if old is not None and old.to_dict() == data else Chunk.from_dict(data))
            articles = {a.id: a for a in (ArticleRecord.from_dict(d) for d, in conn.execute(_sql("SELECT data FROM {s}.articles ORDER BY id", build_id)))}
            rows = conn.execute(_sql("SELECT id, text, embedding FROM {s}.sections ORDER BY pos", build_id)).fetchall()
            dim = manifest.model.dim
            sections = SectionVectors([r[0] for r in rows], [r[1] for r in rows],
                                      np.asarray([_array(r[2]) for r in rows], dtype=np.float32).reshape(len(rows), dim))
            postings = conn.execute(_sql("SELECT term, tf FROM {s}.postings ORDER BY idx, term", build_id)).fetchall()
            per_doc = np.asarray([r[0] for r in conn.execute(_sql("SELECT count(*) FROM {s}.postings GROUP BY idx ORDER BY idx", build_id))], dtype=np.int64)
    terms, term_ids = np.unique(np.asarray([p[0] for p in postings], dtype=object), return_inverse=True)
    lexical = LexicalIndex.from_arrays(list(terms), term_ids.astype(np.int64), np.asarray([p[1] for p in postings], dtype=np.int64), per_doc)
    if len(per_doc) != len(chunks):
        raise IndexMismatch(f"build {build_id}: {len(chunks)} chunks but postings for {len(per_doc)}")
    return LoadedIndex(directory=Path("postgres") / build_id, manifest=manifest, chunks=chunks, articles=articles, faiss_index=None,
                       sections=sections, lexical=lexical, loaded_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))


def _array(value) -> np.ndarray:
    """A vector as pgvector's psycopg loader returns it (a numpy array, or its Vector type), as numpy."""
    return value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)


class _Pool:
    """A few autocommit connections shared by the server's threads (one per concurrent query, up
    to `size`), each with pgvector's types and `hnsw.ef_search` set once, so a search is one
    round trip per statement.

    Each connection is checked as it is handed out (one empty round trip), so connections the
    server dropped (a restart, a fail-over, an administrator ending sessions) are replaced
    before a search uses them. A search waits at most POOL_WAIT_SECONDS for a connection; a
    database that cannot be reached then raises psycopg_pool.PoolTimeout, which the server
    answers with a 503 (server/errors.py)."""

    def __init__(self, url: str, size: int = 8, ef_search: int = EF_SEARCH):
        from pgvector.psycopg import register_vector
        from psycopg_pool import ConnectionPool

        def configure(conn) -> None:
            register_vector(conn)
            conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")

        self.url = url
        self.ef_search = ef_search
        self._pool = ConnectionPool(url, min_size=1, max_size=size, configure=configure, kwargs={"autocommit": True, "connect_timeout": 5},
                                    open=True, timeout=POOL_WAIT_SECONDS, check=ConnectionPool.check_connection)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()


class PostgresBackend(SearchBackend):
    """Searches one build in the database (see the module docstring). `article_ids` are the
    build's articles (for the review-status filter, whose statuses the review log derives)."""

    name = "postgres"

    def __init__(self, url: str, build_id: str, article_ids: Sequence[str], ef_search: int = EF_SEARCH, pool: _Pool | None = None):
        self.url = url
        self.build_id = build_id
        self.article_ids = list(article_ids)
        self.ef_search = ef_search
        self._pool = pool or _Pool(url, ef_search=min(max(ef_search, 1), 1000))  # shared with the backends `over` makes for later builds
        with self._pool.connection() as conn:
            row = conn.execute("SELECT n_docs, avg_doc_len FROM medkb_builds WHERE id = %s", (build_id,)).fetchone()
        if row is None:
            raise DatabaseProblem(f"build {build_id} is not in the database")
        self.n_docs, self.avg_doc_len = int(row[0]), float(row[1])
        self._closed = threading.Event()

    @classmethod
    def for_index(cls, url: str, index: LoadedIndex, ef_search: int = EF_SEARCH) -> "PostgresBackend":
        """The backend over the build that `load_published` read into `index`."""
        return cls(url, index.directory.name, list(index.articles), ef_search=ef_search)

    def over(self, index: LoadedIndex) -> "PostgresBackend":
        return PostgresBackend(self.url, index.directory.name, list(index.articles), ef_search=self.ef_search, pool=self._pool)

    def close(self) -> None:
        """Close the connection pool (shared by every backend `over` made from this one)."""
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    def _where(self, selection: Selection | None, alias: str = "c") -> tuple[str, list[Any]]:
        """SQL conditions (joined by AND; "true" when none) and their parameters for a selection."""
        if selection is None:
            return "true", []
        f = selection.filters
        clauses, params = [], []
        allowed = selection.allowed_articles(self.article_ids)
        if allowed is not None:
            clauses.append(f"{alias}.article_id = ANY(%s)")
            params.append(allowed)
        if f.evidence_kind:
            clauses.append(f"{alias}.evidence_kinds && %s::text[]")
            params.append([str(k) for k in f.evidence_kind])
        if f.audience:
            clauses.append(f"({alias}.audience = ANY(%s) OR {alias}.audience = %s)")
            params.extend([[str(a) for a in f.audience], str(Audience.BOTH)])
        if f.updated_since:
            clauses.append(f"{alias}.last_updated >= %s")
            params.append(f.updated_since)
        if f.retracted == "exclude":
            clauses.append(f"NOT {alias}.cites_retracted")
        return " AND ".join(clauses) or "true", params

    def dense(self, vector: np.ndarray, depth: int, selection: Selection | None = None) -> Ranked:
        if depth <= 0:
            return []
        where, params = self._where(selection)
        # ORDER BY the distance alone: a second sort key would stop PostgreSQL from using the HNSW
        # index (it scans and sorts every row instead); ties are ordered by chunk below.
        query = _sql(f"SELECT c.idx, (c.embedding <#> %s) * -1 FROM {{s}}.chunks c WHERE {where} ORDER BY c.embedding <#> %s LIMIT %s", self.build_id)
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._pool.connection() as conn:
            if depth <= self._pool.ef_search:
                rows = conn.execute(query, [q, *params, q, depth]).fetchall()
            else:
                with conn.transaction():
                    conn.execute(f"SET LOCAL hnsw.ef_search = {int(min(depth, 1000))}")
                    rows = conn.execute(query, [q, *params, q, depth]).fetchall()
            if len(rows) < min(depth, self.n_docs) and (selection is not None or depth > 1000):
                # The index explored ef_search neighbours and the filter kept too few: answer exactly by a scan.
                with conn.transaction():
                    conn.execute("SET LOCAL enable_indexscan = off")
                    rows = conn.execute(query, [q, *params, q, depth]).fetchall()
        return sorted(((int(i), float(s)) for i, s in rows), key=lambda r: (-r[1], r[0]))

    def dense_scores(self, vector: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._pool.connection() as conn:
            rows = conn.execute(_sql("SELECT idx, (embedding <#> %s) * -1 FROM {s}.chunks WHERE idx = ANY(%s)", self.build_id),
                                [q, [int(i) for i in ids]]).fetchall()
        score = dict(rows)
        return np.asarray([score.get(int(i), 0.0) for i in ids], dtype=np.float32)

    def _bm25_sql(self, where: str, restrict: str, limit: bool) -> Any:
        join = "" if where == "true" else " JOIN {s}.chunks c ON c.idx = p.idx"
        return _sql(
            "SELECT p.idx, sum(t.idf * p.tf / (p.tf + %s * (1 - %s + %s * p.doc_len / %s))) AS score "
            "FROM unnest(%s::text[]) AS q(term) JOIN {s}.terms t ON t.term = q.term JOIN {s}.postings p ON p.term = q.term" + join +
            f" WHERE {where} {restrict} GROUP BY p.idx" + (" ORDER BY score DESC, p.idx LIMIT %s" if limit else ""), self.build_id)

    def lexical(self, tokens: Sequence[str], depth: int, selection: Selection | None = None) -> Ranked:
        if not tokens or depth <= 0 or not self.n_docs:
            return []
        where, params = self._where(selection)
        with self._pool.connection() as conn:
            rows = conn.execute(self._bm25_sql(where, "", True),
                                [BM25_K1, BM25_B, BM25_B, self.avg_doc_len, list(tokens), *params, depth]).fetchall()
        return [(int(i), float(s)) for i, s in rows if s > 0]

    def lexical_scores(self, tokens: Sequence[str], ids: np.ndarray) -> np.ndarray:
        if not len(ids) or not tokens or not self.n_docs:
            return np.zeros(len(ids), dtype=np.float32)
        with self._pool.connection() as conn:
            rows = conn.execute(self._bm25_sql("true", "AND p.idx = ANY(%s)", False),
                                [BM25_K1, BM25_B, BM25_B, self.avg_doc_len, list(tokens), [int(i) for i in ids]]).fetchall()
        score = dict(rows)
        return np.asarray([score.get(int(i), 0.0) for i in ids], dtype=np.float32)


def open_service(url: str, model_dir: Path | None = None, settings=None, cache_size: int = 1024, batch_window_ms: float = 2.0,
                 ef_search: int = EF_SEARCH, encoder: str | None = None, onnx_dir: Path | None = None):
    """retrieval.search.open_service for the database: load the model (run by `encoder`; default
    MEDKB_ENCODER; ONNX exports kept in `onnx_dir`) and the published build at `url` (checked against the model, encoder included) and search it through PostgreSQL. Raises DatabaseProblem
    (unreachable, nothing published) or IndexMismatch (another model), saying what to run."""
    from indexer.embedding import ModelInfo, load_embedder
    from retrieval.search import RetrievalSettings, SearchService

    embedder = load_embedder(model_dir, encoder, onnx_dir=onnx_dir)
    index = load_published(url, ModelInfo.of(embedder))
    return SearchService(index, embedder, cache_size=cache_size, settings=settings or RetrievalSettings(), batch_window_ms=batch_window_ms,
                         backend=PostgresBackend.for_index(url, index, ef_search=ef_search))

"""The build cache: what a build made from unchanged input, kept on disk so the next build
does only what is new.

Two kinds of entry live in one SQLite file (`<cache dir>/build-cache.sqlite`):

- **vectors**: a passage's embedding, keyed by the model's identity (the weights' SHA-256 and
  every other `ModelInfo` field, plus an encoder or precision when the embedder has one) and
  the SHA-256 of the exact text embedded. A build embeds only texts it finds no vector for.
- **articles**: what parsing and chunking made of one article file (its chunks as written
  to chunks.jsonl, its record, its sections, its BM25 term counts, or its problems), keyed
  by the file's name and SHA-256, the chunker settings, the model (the chunker counts model
  word pieces) and a digest of the indexer's own source, so a change to the parser or the
  chunker never serves an entry made by the old code.

Safety: SQLite in WAL mode; every write is one transaction, so a build killed at any point
leaves each entry either whole or absent, and the next build reads the cache as it was at
the last commit. Each row also carries a CRC32 of its key and value, checked on every read;
a row that fails it is dropped and counted as a miss.

Bounded: every row records the build ("generation") that last used it; when the file's
entries exceed `max_bytes`, the least recently used generations go first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import marshal
import os
import sqlite3
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA = 3
FILE_NAME = "build-cache.sqlite"
DEFAULT_MAX_MB = 2048
_BATCH = 500  # keys per SQL statement (SQLite allows 32766 parameters; smaller keeps statements cheap)
# The sources whose behaviour shapes an article entry: any change to them invalidates every entry.
_SOURCES = ("articles.py", "chunking.py", "citations.py", "vocabulary.py", "lexical.py", "index_store.py", "build_cache.py")


def model_key(embedder) -> str:
    """Who made a vector: every field of the model's identity (`ModelInfo`: weights, dimension,
    and the encoder, precision and export recipe, since an ONNX or quantised encoder makes other
    vectors from the same weights). sha256 hex."""
    from indexer.embedding import ModelInfo

    identity = dataclasses.asdict(ModelInfo.of(embedder))
    if (identity["encoder"], identity["precision"], identity["recipe"]) == ("torch", "fp32", ""):
        # torch's vectors were cached before there was a choice of encoder: their keys stay.
        for name in ("encoder", "precision", "recipe"):
            del identity[name]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def code_digest() -> str:
    """sha256 over the indexer sources that shape an article entry, with the Python version
    (entries are marshalled)."""
    digest = hashlib.sha256(f"{sys.version_info[:2]};marshal={marshal.version};schema={SCHEMA}".encode())
    here = Path(__file__).resolve().parent
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    return digest.hexdigest()


@dataclass
class CacheStats:
    """What one build found in the cache and what it added (counts of entries)."""

    vector_hits: int = 0
    vector_misses: int = 0
    article_hits: int = 0
    article_misses: int = 0
    damaged: int = 0  # rows that failed their CRC: dropped, counted as misses
    snapshot_hits: int = 0  # vectors read from the last build's snapshot (the rest from the database)
    files_hashed: int = 0  # corpus files read and hashed (the others' stat matched their last hash)
    evicted: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # time spent in the cache, by operation

    def timed(self, what: str, started: float) -> None:
        self.seconds[what] = round(self.seconds.get(what, 0.0) + time.perf_counter() - started, 4)


class MemoryCache:
    """The same interface, in memory only: what a build without a cache directory uses, so
    that every build runs the same code."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[str, bytes], np.ndarray] = {}
        self._articles: dict[bytes, bytes] = {}
        self._term_ids: dict[str, int] = {}
        self._terms: list[str] = []
        self.stats = CacheStats()
        self.path: Path | None = None

    def term_ids(self, terms: Sequence[str]) -> list[int]:
        out = []
        for t in terms:
            i = self._term_ids.get(t)
            if i is None:
                i = self._term_ids[t] = len(self._terms)
                self._terms.append(t)
            out.append(i)
        return out

    def terms(self) -> list[str]:
        return self._terms

    def snapshot(self, model: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        pass

    def file_digests(self, paths: Sequence[Path]) -> list[str]:
        return [_hash_file(p) for p in paths]

    def begin(self) -> None:
        self.stats = CacheStats()

    def vectors(self, model: str, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        out = {d: self._vectors[(model, d)] for d in digests if (model, d) in self._vectors}
        self.stats.vector_hits += len(out)
        self.stats.vector_misses += len(digests) - len(out)
        return out

    def lookup(self, model: str, digests: Sequence[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, found): one row per digest, zeros where not cached."""
        found = self.vectors(model, digests)
        out = np.zeros((len(digests), dim), dtype=np.float32)
        have = np.zeros(len(digests), dtype=bool)
        for i, d in enumerate(digests):
            v = found.get(d)
            if v is not None:
                out[i], have[i] = v, True
        return out, have

    def put_vectors(self, model: str, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        for d, v in zip(digests, np.asarray(vectors, dtype=np.float32)):
            self._vectors[(model, d)] = v.copy()

    def articles(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        out = {k: self._articles[k] for k in keys if k in self._articles}
        self.stats.article_hits += len(out)
        self.stats.article_misses += len(keys) - len(out)
        return out

    def put_articles(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._articles.update(items)

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class BuildCache:
    """The on-disk cache (see the module docstring). One connection, used from one thread.

    Layout: `vectors` and `articles` hold the entries; `used` holds, per entry, the generation
    (build) that last used it and its size, in small rows of their own, so that stamping every
    entry a build uses rewrites a few bytes each, never the vectors and articles themselves."""

    VECTOR, ARTICLE = 0, 1

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_MB << 20):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most the last commits, never consistency
        with self._transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and row[0] != str(SCHEMA):  # another layout: start afresh (it is only a cache)
                for table in ("vectors", "articles", "used", "models", "terms", "files"):
                    self._db.execute(f"DROP TABLE IF EXISTS {table}")
                self._db.execute("DELETE FROM meta")
                row = None
            self._db.execute("CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (model INTEGER NOT NULL, text_sha256 BLOB NOT NULL, vector BLOB NOT NULL,"
                             " crc INTEGER NOT NULL, PRIMARY KEY (model, text_sha256)) WITHOUT ROWID")
            self._db.execute("CREATE TABLE IF NOT EXISTS articles (key BLOB PRIMARY KEY, value BLOB NOT NULL, crc INTEGER NOT NULL) WITHOUT ROWID")
            self._db.execute("CREATE TABLE IF NOT EXISTS used (kind INTEGER NOT NULL, model INTEGER NOT NULL, key BLOB NOT NULL,"
                             " generation INTEGER NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (kind, model, key)) WITHOUT ROWID")
            self._db.execute("CREATE INDEX IF NOT EXISTS used_generation ON used (generation)")
            # BM25 terms get ids once, for good: article entries hold their chunks' term ids
            self._db.execute("CREATE TABLE IF NOT EXISTS terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)")
            # each corpus file's SHA-256 with the stat it was read under (see file_digests)
            self._db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
                             " ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL, seen_ns INTEGER NOT NULL) WITHOUT ROWID")
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?), ('generation', '0')", (str(SCHEMA),))
        self.generation = self._generation()
        self._models: dict[str, int] = {}
        self._term_list: list[str] | None = None
        self._term_index: dict[str, int] | None = None
        self._snapshot: tuple[str, dict[bytes, int], np.ndarray] | None = None

    # ------------------------------------------------------------ plumbing

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, kind, value, tb):
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
            return False

    def _transaction(self) -> "BuildCache._Tx":
        return BuildCache._Tx(self._db)

    def _generation(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def _model_id(self, model: str) -> int:
        if model not in self._models:
            with self._transaction():
                self._db.execute("INSERT OR IGNORE INTO models (key) VALUES (?)", (model,))
                self._models[model] = self._db.execute("SELECT id FROM models WHERE key = ?", (model,)).fetchone()[0]
        return self._models[model]

    def begin(self) -> None:
        """Start a build: a new generation, which every entry this build uses is stamped with."""
        with self._transaction():
            self.generation = self._generation() + 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(self.generation),))
        self.stats = CacheStats()

    def close(self) -> None:
        self._db.close()

    def _stamp(self, kind: int, model: int, keys: Sequence[bytes]) -> None:
        """Mark entries as used by this build (inside a transaction)."""
        for start in range(0, len(keys), _BATCH):
            part = keys[start : start + _BATCH]
            self._db.execute(f"UPDATE used SET generation = ? WHERE kind = ? AND model = ? AND key IN ({','.join('?' * len(part))})",
                             (self.generation, kind, model, *part))

    def _read(self, sql: str, prefix: tuple, keys: Sequence[bytes]) -> list[tuple]:
        rows: list[tuple] = []
        for start in range(0, len(keys), _BATCH):
            part = keys[start : start + _BATCH]
            rows.extend(self._db.execute(sql.format(marks=",".join("?" * len(part))), (*prefix, *part)).fetchall())
        return rows

    # ------------------------------------------------------------ files

    def file_digests(self, paths: Sequence[Path]) -> list[str]:
        """Each file's SHA-256 ("" when it cannot be read), without reading a file whose size,
        mtime, ctime and inode are those it had when it was last hashed, as git's index does.
        A file changed within RACY_NS of being hashed is hashed again (a timestamp cannot tell
        two writes in the same tick apart); the kernel sets ctime on every write, so a tool
        that restores mtime does not fool it."""
        started = time.perf_counter()
        known = {row[0]: row[1:] for row in self._read("SELECT path, size, mtime_ns, ctime_ns, inode, sha256, seen_ns FROM files WHERE path IN ({marks})",
                                                       (), [str(p) for p in paths])}
        out, fresh = [], []
        now = time.time_ns()
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                out.append("")
                continue
            stat = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            row = known.get(str(path))
            if row is not None and tuple(row[:4]) == stat and max(st.st_mtime_ns, st.st_ctime_ns) < row[5] - RACY_NS:
                out.append(row[4])
                continue
            digest = _hash_file(path)
            out.append(digest)
            if digest:
                fresh.append((str(path), *stat, digest, now))
        if fresh:
            with self._transaction():
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", fresh)
        self.stats.files_hashed = len(fresh)
        self.stats.timed("file_digests", started)
        return out

    # ------------------------------------------------------------ terms

    def terms(self) -> list[str]:
        """Every term by id."""
        if self._term_list is None:
            rows = self._db.execute("SELECT id, term FROM terms ORDER BY id").fetchall()
            self._term_list = [""] * (rows[-1][0] + 1 if rows else 0)
            for i, term in rows:
                self._term_list[i] = term
        return self._term_list

    def term_ids(self, terms: Sequence[str]) -> list[int]:
        """Ids of `terms`, new ones numbered and stored (committed before any entry that uses them)."""
        if self._term_index is None:
            self._term_index = {t: i for i, t in enumerate(self.terms())}
        new = [t for t in dict.fromkeys(terms) if t not in self._term_index]
        if new:
            with self._transaction():
                start = self._db.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM terms").fetchone()[0]
                self._db.executemany("INSERT INTO terms (id, term) VALUES (?, ?)", [(start + i, t) for i, t in enumerate(new)])
            terms_list = self.terms()
            terms_list.extend([""] * (start + len(new) - len(terms_list)))
            for i, t in enumerate(new):
                self._term_index[t] = start + i
                terms_list[start + i] = t
        return [self._term_index[t] for t in terms]

    # ------------------------------------------------------------ vectors

    def _snapshot_path(self) -> Path:
        return self.path.with_name("last-build-vectors.npz")

    def snapshot(self, model: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Keep the vectors of the build just made in one file beside the database, which the
        next build reads whole instead of querying them one by one. A derived copy: written to a
        temporary name and renamed, with a CRC32 over its contents checked when read; if it is
        missing, damaged or of another model, the database answers."""
        started = time.perf_counter()
        keys_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 32) if keys else np.zeros((0, 32), np.uint8)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        crc = zlib.crc32(vectors.data, zlib.crc32(keys_array.data, zlib.crc32(model.encode())))
        tmp = self._snapshot_path().with_suffix(".tmp.npz")
        np.savez(tmp, model=np.array(model), keys=keys_array, vectors=vectors, crc=np.array(crc, dtype=np.uint64))
        os.replace(tmp, self._snapshot_path())
        self._snapshot = (model, {k: i for i, k in enumerate(keys)}, vectors)
        self.stats.timed("snapshot_write", started)

    def _load_snapshot(self, model: str) -> tuple[dict[bytes, int], np.ndarray] | None:
        if self._snapshot is not None and self._snapshot[0] == model:
            return self._snapshot[1], self._snapshot[2]
        try:
            with np.load(self._snapshot_path(), allow_pickle=False) as data:
                stored_model, keys, vectors, crc = str(data["model"]), data["keys"], data["vectors"], int(data["crc"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if stored_model != model or zlib.crc32(vectors.data, zlib.crc32(keys.data, zlib.crc32(model.encode()))) != crc:
            return None
        index = {keys[i].tobytes(): i for i in range(len(keys))}
        self._snapshot = (model, index, vectors)
        return index, vectors

    def lookup(self, model: str, digests: Sequence[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, found): one row per digest (zeros where not cached), gathered from the last
        build's snapshot in one indexing operation, the rest from the database."""
        started = time.perf_counter()
        n = len(digests)
        snap = self._load_snapshot(model)
        if snap is not None and snap[1].shape[1] == dim:
            index, vectors = snap
            rows = np.fromiter((index.get(d, -1) for d in digests), dtype=np.int64, count=n)
            have = rows >= 0
            out = vectors[np.where(have, rows, 0)]
            out[~have] = 0.0
            self.stats.snapshot_hits += len({d for d, h in zip(digests, have.tolist()) if h})
        else:
            out, have = np.zeros((n, dim), dtype=np.float32), np.zeros(n, dtype=bool)
        rest = list(dict.fromkeys(d for d, h in zip(digests, have.tolist()) if not h))
        found = self._vectors_from_db(model, rest) if rest else {}
        for i in np.flatnonzero(~have).tolist():
            v = found.get(digests[i])
            if v is not None:
                out[i], have[i] = v, True
        unique_found = len({d for d, h in zip(digests, have.tolist()) if h})
        self.stats.vector_hits += unique_found
        self.stats.vector_misses += len(set(digests)) - unique_found
        self.stats.timed("vectors_read", started)
        return out, have

    def vectors(self, model: str, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `digests` (text SHA-256s) for `model`: from the last build's
        snapshot when it has them, else from the database (stamped as used by this build)."""
        started = time.perf_counter()
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(digests))
        snap = self._load_snapshot(model)
        if snap is not None:
            index, vectors = snap
            for d in unique:
                row = index.get(d)
                if row is not None:
                    found[d] = vectors[row]
            self.stats.snapshot_hits += len(found)
        rest = [d for d in unique if d not in found]
        if rest:
            found.update(self._vectors_from_db(model, rest))
        self.stats.vector_hits += len(found)
        self.stats.vector_misses += len(unique) - len(found)
        self.stats.timed("vectors_read", started)
        return found

    def _vectors_from_db(self, model: str, unique: list[bytes]) -> dict[bytes, np.ndarray]:
        mid = self._model_id(model)
        found: dict[bytes, np.ndarray] = {}
        damaged: list[bytes] = []
        with self._transaction():
            for digest, blob, crc in self._read("SELECT text_sha256, vector, crc FROM vectors WHERE model = ? AND text_sha256 IN ({marks})", (mid,), unique):
                if zlib.crc32(blob, zlib.crc32(digest)) != crc:
                    damaged.append(digest)
                    continue
                found[digest] = np.frombuffer(blob, dtype=np.float32)
            if damaged:
                self._db.executemany("DELETE FROM vectors WHERE model = ? AND text_sha256 = ?", [(mid, d) for d in damaged])
                self._db.executemany("DELETE FROM used WHERE kind = ? AND model = ? AND key = ?", [(self.VECTOR, mid, d) for d in damaged])
            self._stamp(self.VECTOR, mid, list(found))
        self.stats.damaged += len(damaged)
        return found

    def put_vectors(self, model: str, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors (one transaction: all of them or, if the process dies, none)."""
        started = time.perf_counter()
        mid = self._model_id(model)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows, uses = [], []
        for digest, vector in zip(digests, vectors):
            blob = vector.tobytes()
            rows.append((mid, digest, blob, zlib.crc32(blob, zlib.crc32(digest))))
            uses.append((self.VECTOR, mid, digest, self.generation, len(blob) + len(digest)))
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
            self._db.executemany("INSERT OR REPLACE INTO used VALUES (?, ?, ?, ?, ?)", uses)
        self.stats.timed("vectors_write", started)

    # ------------------------------------------------------------ articles

    def articles(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The cached article entries among `keys`, stamped as used by this build."""
        started = time.perf_counter()
        found: dict[bytes, bytes] = {}
        damaged: list[bytes] = []
        unique = list(dict.fromkeys(keys))
        with self._transaction():
            for key, value, crc in self._read("SELECT key, value, crc FROM articles WHERE key IN ({marks})", (), unique):
                if zlib.crc32(value, zlib.crc32(key)) != crc:
                    damaged.append(key)
                    continue
                found[key] = value
            if damaged:
                self._db.executemany("DELETE FROM articles WHERE key = ?", [(k,) for k in damaged])
                self._db.executemany("DELETE FROM used WHERE kind = ? AND model = 0 AND key = ?", [(self.ARTICLE, k) for k in damaged])
            self._stamp(self.ARTICLE, 0, list(found))
        self.stats.article_hits += len(found)
        self.stats.article_misses += len(unique) - len(found)
        self.stats.damaged += len(damaged)
        self.stats.timed("articles_read", started)
        return found

    def put_articles(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        started = time.perf_counter()
        items = list(items)
        rows = [(key, value, zlib.crc32(value, zlib.crc32(key))) for key, value in items]
        uses = [(self.ARTICLE, 0, key, self.generation, len(key) + len(value)) for key, value in items]
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO articles VALUES (?, ?, ?)", rows)
            self._db.executemany("INSERT OR REPLACE INTO used VALUES (?, ?, ?, ?, ?)", uses)
        self.stats.timed("articles_write", started)

    # ------------------------------------------------------------ bounds

    def size_bytes(self) -> int:
        """Bytes held by entries (keys and values; SQLite's own overhead comes on top)."""
        return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM used").fetchone()[0])

    def counts(self) -> tuple[int, int]:
        """(vectors, article entries) held."""
        return (self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0], self._db.execute("SELECT COUNT(*) FROM articles").fetchone()[0])

    def finish(self) -> None:
        """End a build: evict least recently used entries until the cache fits `max_bytes`."""
        started = time.perf_counter()
        total = self.size_bytes()
        if total > self.max_bytes:
            # Vectors read from the snapshot were not stamped when read: stamp them now, so that
            # what the last build used is the last to go.
            snap = self._snapshot
            if snap is not None:
                with self._transaction():
                    self._stamp(self.VECTOR, self._model_id(snap[0]), list(snap[1]))
            drop: list[tuple[int, int, bytes]] = []
            for kind, model, key, size in self._db.execute("SELECT kind, model, key, size FROM used ORDER BY generation").fetchall():
                if total <= self.max_bytes:
                    break
                total -= size
                drop.append((kind, model, key))
            with self._transaction():
                self._db.executemany("DELETE FROM vectors WHERE model = ? AND text_sha256 = ?", [(m, k) for kind, m, k in drop if kind == self.VECTOR])
                self._db.executemany("DELETE FROM articles WHERE key = ?", [(k,) for kind, _, k in drop if kind == self.ARTICLE])
                self._db.executemany("DELETE FROM used WHERE kind = ? AND model = ? AND key = ?", drop)
            self.stats.evicted += len(drop)
        self.stats.timed("evict", started)

    def check(self) -> str:
        """SQLite's own integrity check ("ok" when the file is sound)."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]


RACY_NS = 2_000_000_000  # a file written less than 2 s before it was hashed is hashed again next time


def _hash_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def open_cache(directory: Path | None, max_mb: int = DEFAULT_MAX_MB) -> BuildCache | MemoryCache:
    """The on-disk cache under `directory`, or an in-memory one when `directory` is None or `max_mb` is 0."""
    if directory is None or max_mb <= 0:
        return MemoryCache()
    return BuildCache(directory, max_mb << 20)


def embed_cached(texts: Sequence[str], embedder, cache: BuildCache | MemoryCache, model: str, batch_size: int = 32,
                 progress: Callable[[int], None] | None = None, digests: Sequence[bytes] | None = None,
                 commit_every: int = 256) -> tuple[np.ndarray, int]:
    """Vectors (len(texts), dim) for `texts`: cached ones read, the rest embedded (each distinct
    text once) and stored every `commit_every` texts, so a build killed mid-way keeps what it
    embedded. `texts` may be a lazy sequence: only the texts missing from the cache are read.
    Returns (vectors, texts embedded)."""
    digests = list(digests) if digests is not None else [text_digest(t) for t in texts]
    out, have = cache.lookup(model, digests, int(embedder.dim))
    if progress and have.any():
        progress(int(have.sum()))
    missing: dict[bytes, list[int]] = {}
    for i in np.flatnonzero(~have).tolist():
        missing.setdefault(digests[i], []).append(i)
    todo = list(missing.items())
    for start in range(0, len(todo), commit_every):
        part = todo[start : start + commit_every]
        vectors = np.asarray(embedder.encode_documents([texts[rows[0]] for _, rows in part], batch_size=batch_size, progress=progress), dtype=np.float32)
        cache.put_vectors(model, [d for d, _ in part], vectors)
        for (_, rows), v in zip(part, vectors):
            out[rows] = v
        if progress:  # the model ticked each distinct text once; duplicates count too
            progress(sum(len(rows) - 1 for _, rows in part))
    return out, len(todo)

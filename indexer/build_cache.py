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
import sqlite3
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA = 1
FILE_NAME = "build-cache.sqlite"
DEFAULT_MAX_MB = 2048
_BATCH = 500  # keys per SQL statement (SQLite allows 32766 parameters; smaller keeps statements cheap)
# The sources whose behaviour shapes an article entry: any change to them invalidates every entry.
_SOURCES = ("articles.py", "chunking.py", "citations.py", "vocabulary.py", "lexical.py", "index_store.py", "build_cache.py")


def model_key(embedder) -> str:
    """Who made a vector: every field of the model's identity (`ModelInfo`), and the encoder
    and precision when the embedder says (an ONNX or quantised encoder makes other vectors
    from the same weights). sha256 hex."""
    from indexer.embedding import ModelInfo

    identity = dataclasses.asdict(ModelInfo.of(embedder))
    for extra in ("encoder", "precision"):
        value = getattr(embedder, extra, None)
        if value is not None:
            identity[extra] = str(value)
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
        self.stats = CacheStats()
        self.path: Path | None = None

    def begin(self) -> None:
        self.stats = CacheStats()

    def vectors(self, model: str, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        out = {d: self._vectors[(model, d)] for d in digests if (model, d) in self._vectors}
        self.stats.vector_hits += len(out)
        self.stats.vector_misses += len(digests) - len(out)
        return out

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
    """The on-disk cache (see the module docstring). One connection, used from one thread."""

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
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, text_sha256 BLOB NOT NULL, vector BLOB NOT NULL,"
                             " crc INTEGER NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (model, text_sha256)) WITHOUT ROWID")
            self._db.execute("CREATE TABLE IF NOT EXISTS articles (key BLOB PRIMARY KEY, value BLOB NOT NULL,"
                             " crc INTEGER NOT NULL, used INTEGER NOT NULL) WITHOUT ROWID")
            self._db.execute("CREATE INDEX IF NOT EXISTS vectors_used ON vectors (used)")
            self._db.execute("CREATE INDEX IF NOT EXISTS articles_used ON articles (used)")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?), ('generation', '0')", (str(SCHEMA),))
            elif row[0] != str(SCHEMA):  # another layout: start afresh (it is only a cache)
                self._db.execute("DELETE FROM vectors")
                self._db.execute("DELETE FROM articles")
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA),))
        self.generation = self._generation()

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

    def begin(self) -> None:
        """Start a build: a new generation, which every entry this build uses is stamped with."""
        with self._transaction():
            self.generation = self._generation() + 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(self.generation),))
        self.stats = CacheStats()

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ vectors

    def vectors(self, model: str, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `digests` (text SHA-256s) for `model`, stamped as used by this build."""
        started = time.perf_counter()
        found: dict[bytes, np.ndarray] = {}
        damaged: list[bytes] = []
        unique = list(dict.fromkeys(digests))
        with self._transaction():
            for start in range(0, len(unique), _BATCH):
                part = unique[start : start + _BATCH]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT text_sha256, vector, crc FROM vectors WHERE model = ? AND text_sha256 IN ({marks})", (model, *part)).fetchall()
                for digest, blob, crc in rows:
                    if zlib.crc32(blob, zlib.crc32(digest)) != crc:
                        damaged.append(digest)
                        continue
                    found[digest] = np.frombuffer(blob, dtype=np.float32)
                self._db.execute(f"UPDATE vectors SET used = ? WHERE model = ? AND used < ? AND text_sha256 IN ({marks})", (self.generation, model, self.generation, *part))
            if damaged:
                self._db.executemany("DELETE FROM vectors WHERE model = ? AND text_sha256 = ?", [(model, d) for d in damaged])
        self.stats.vector_hits += len(found)
        self.stats.vector_misses += len(unique) - len(found)
        self.stats.damaged += len(damaged)
        self.stats.timed("vectors_read", started)
        return found

    def put_vectors(self, model: str, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors (one transaction: all of them or, if the process dies, none)."""
        started = time.perf_counter()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = []
        for digest, vector in zip(digests, vectors):
            blob = vector.tobytes()
            rows.append((model, digest, blob, zlib.crc32(blob, zlib.crc32(digest)), self.generation))
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)
        self.stats.timed("vectors_write", started)

    # ------------------------------------------------------------ articles

    def articles(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The cached article entries among `keys`, stamped as used by this build."""
        started = time.perf_counter()
        found: dict[bytes, bytes] = {}
        damaged: list[bytes] = []
        unique = list(dict.fromkeys(keys))
        with self._transaction():
            for start in range(0, len(unique), _BATCH):
                part = unique[start : start + _BATCH]
                marks = ",".join("?" * len(part))
                for key, value, crc in self._db.execute(f"SELECT key, value, crc FROM articles WHERE key IN ({marks})", part).fetchall():
                    if zlib.crc32(value, zlib.crc32(key)) != crc:
                        damaged.append(key)
                        continue
                    found[key] = value
                self._db.execute(f"UPDATE articles SET used = ? WHERE used < ? AND key IN ({marks})", (self.generation, self.generation, *part))
            if damaged:
                self._db.executemany("DELETE FROM articles WHERE key = ?", [(k,) for k in damaged])
        self.stats.article_hits += len(found)
        self.stats.article_misses += len(unique) - len(found)
        self.stats.damaged += len(damaged)
        self.stats.timed("articles_read", started)
        return found

    def put_articles(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        started = time.perf_counter()
        rows = [(key, value, zlib.crc32(value, zlib.crc32(key)), self.generation) for key, value in items]
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO articles VALUES (?, ?, ?, ?)", rows)
        self.stats.timed("articles_write", started)

    # ------------------------------------------------------------ bounds

    def size_bytes(self) -> int:
        """Bytes held by entries (keys and values; SQLite's own overhead comes on top)."""
        v = self._db.execute("SELECT COALESCE(SUM(length(vector) + length(text_sha256) + length(model)), 0) FROM vectors").fetchone()[0]
        a = self._db.execute("SELECT COALESCE(SUM(length(value) + length(key)), 0) FROM articles").fetchone()[0]
        return int(v) + int(a)

    def counts(self) -> tuple[int, int]:
        """(vectors, article entries) held."""
        return (self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0], self._db.execute("SELECT COUNT(*) FROM articles").fetchone()[0])

    def finish(self) -> None:
        """End a build: evict least recently used entries until the cache fits `max_bytes`."""
        started = time.perf_counter()
        total = self.size_bytes()
        if total > self.max_bytes:
            rows = self._db.execute(
                "SELECT used, length(vector) + length(text_sha256) + length(model), 'v', model, text_sha256 FROM vectors"
                " UNION ALL SELECT used, length(value) + length(key), 'a', NULL, key FROM articles ORDER BY 1").fetchall()
            drop_v, drop_a = [], []
            for _, size, kind, model, key in rows:
                if total <= self.max_bytes:
                    break
                total -= size
                (drop_v.append((model, key)) if kind == "v" else drop_a.append((key,)))
            with self._transaction():
                self._db.executemany("DELETE FROM vectors WHERE model = ? AND text_sha256 = ?", drop_v)
                self._db.executemany("DELETE FROM articles WHERE key = ?", drop_a)
            self.stats.evicted += len(drop_v) + len(drop_a)
        self.stats.timed("evict", started)

    def check(self) -> str:
        """SQLite's own integrity check ("ok" when the file is sound)."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]


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
    found = cache.vectors(model, digests)
    uses: dict[bytes, int] = {}
    missing: dict[bytes, int] = {}
    for i, d in enumerate(digests):
        uses[d] = uses.get(d, 0) + 1
        if d not in found and d not in missing:
            missing[d] = i
    if progress and found:
        progress(sum(uses[d] for d in found))
    todo = list(missing.items())
    for start in range(0, len(todo), commit_every):
        part = todo[start : start + commit_every]
        vectors = embedder.encode_documents([texts[i] for _, i in part], batch_size=batch_size)
        vectors = np.asarray(vectors, dtype=np.float32)
        cache.put_vectors(model, [d for d, _ in part], vectors)
        for (d, _), v in zip(part, vectors):
            found[d] = v
        if progress:
            progress(sum(uses[d] for d, _ in part))
    out = np.zeros((len(digests), int(embedder.dim)), dtype=np.float32)
    for i, d in enumerate(digests):
        out[i] = found[d]
    return out, len(todo)

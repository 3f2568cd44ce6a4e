"""The search service: one plain-Python object that the page, the JSON API and the
offline evaluations all call."""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.chunking import Chunk
from indexer.embedding import Embedder
from indexer.index_store import LoadedIndex, check_compatible


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


@dataclass
class SearchResponse:
    query: str
    results: list[SearchResult]
    took_ms: float
    total_chunks: int
    index: dict[str, Any] = field(default_factory=dict)


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
    """Dense retrieval over a loaded index. Refuses an index built with another model."""

    def __init__(self, index: LoadedIndex, embedder: Embedder, cache_size: int = 1024):
        check_compatible(index.manifest, embedder.name, embedder.checksum, embedder.dim, embedder.normalize)
        self.index = index
        self.embedder = embedder
        self.cache = QueryCache(cache_size)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.index.manifest

    def embed_query(self, query: str) -> np.ndarray:
        key = " ".join(query.split()).lower()
        vector = self.cache.get(key)
        if vector is None:
            vector = self.embedder.encode_queries([query])[0]
            self.cache.put(key, vector)
        return vector

    def search(self, query: str, k: int = 10, filters: Filters = Filters()) -> SearchResponse:
        started = time.perf_counter()
        chunks = self.index.chunks
        total = len(chunks)
        results: list[SearchResult] = []
        if total:
            vector = self.embed_query(query).reshape(1, -1)
            # With filters, look deeper so that k admitted results survive; at worst, everything.
            depth = min(total, k if not filters.active() else max(k * 20, 200))
            while True:
                scores, ids = self.index.faiss_index.search(vector, depth)
                candidates = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and filters.admits(chunks[i])]
                if len(candidates) >= k or depth >= total:
                    break
                depth = min(total, depth * 4)
            # Deterministic order: score, then chunk id, so equal scores never swap between runs.
            candidates.sort(key=lambda c: (-round(c[0], 6), chunks[c[1]].id))
            results = [SearchResult(rank=r + 1, score=s, chunk=chunks[i]) for r, (s, i) in enumerate(candidates[:k])]
        return SearchResponse(
            query=query,
            results=results,
            took_ms=(time.perf_counter() - started) * 1000,
            total_chunks=total,
            index={"build": self.index.directory.name, "model": self.manifest["model"]["name"]},
        )

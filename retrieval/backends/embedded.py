"""The embedded backend: FAISS (exact inner product) and bm25s, in memory, over a build
directory written by indexer/index_store.py. What medkb has always searched with."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.index_store import LoadedIndex
from retrieval.backends.base import Ranked, SearchBackend, Selection


class EmbeddedBackend(SearchBackend):
    """Searches the build's vectors (`index.faiss_index`, a flat inner-product index, through
    retrieval.vector_search: exact scores, quantised candidates on large builds) and
    `index.lexical` (bm25s). Selections are applied through their in-memory mask."""

    name = "embedded"

    def __init__(self, index: LoadedIndex):
        from retrieval.vector_search import VectorSearch

        self.index = index
        self._vectors = _flat_vectors(index.faiss_index)
        self._search = VectorSearch(self._vectors, flat=index.faiss_index)
        self._last: tuple[tuple[str, ...], np.ndarray] | None = None  # the last query's BM25 over every chunk

    def over(self, index: LoadedIndex) -> "EmbeddedBackend":
        return EmbeddedBackend(index)

    def dense(self, vector: np.ndarray, depth: int, selection: Selection | None = None) -> Ranked:
        allowed = None
        if selection is not None:
            allowed = np.flatnonzero(selection.mask).astype(np.int64)
            if not len(allowed):
                return []
        return self._search.search(vector, depth, allowed)

    def dense_scores(self, vector: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        # einsum, one row at a time: a BLAS product would start threads on every core, which on a
        # busy machine costs more than the rest of the query (measured on the ranking branch).
        return np.einsum("ij,j->i", self._vectors[ids], vector.astype(np.float32))

    def _all_scores(self, tokens: Sequence[str]) -> np.ndarray:
        key = tuple(tokens)
        last = self._last  # read once: another thread may replace it meanwhile
        if last is None or last[0] != key:
            last = (key, self.index.lexical.scores_of(list(key)))
            self._last = last
        return last[1]

    def lexical(self, tokens: Sequence[str], depth: int, selection: Selection | None = None) -> Ranked:
        scores = self._all_scores(tokens)
        if selection is not None:
            scores = np.where(selection.mask, scores, 0.0)
        top = _top(scores, depth)
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def lexical_scores(self, tokens: Sequence[str], ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        return self._all_scores(tokens)[ids].astype(np.float32)


def _flat_vectors(faiss_index) -> np.ndarray:
    """The chunk vectors (n, dim) of a flat FAISS index, without a copy where FAISS allows it."""
    import faiss

    n, d = faiss_index.ntotal, faiss_index.d
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    try:
        return faiss.rev_swig_ptr(faiss_index.get_xb(), n * d).reshape(n, d)
    except AttributeError:
        return faiss_index.reconstruct_n(0, n)


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Indices of the `depth` highest scores, best first (ties by index)."""
    if depth >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    part = np.argpartition(-scores, depth - 1)[:depth]
    return part[np.lexsort((part, -scores[part]))]

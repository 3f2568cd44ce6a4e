"""The search backend interface: the two candidate lists (dense, lexical) under filters, and
each candidate's dense and BM25 score, over one build's chunks.

Chunks are named by their position in the build (0..n-1, the order of `LoadedIndex.chunks`,
which is FAISS's id order), so every backend returns the same ids for the same chunk.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexer.vocabulary import ReviewStatus

if TYPE_CHECKING:
    from indexer.index_store import LoadedIndex
    from retrieval.search import Filters

Ranked = list[tuple[int, float]]  # (chunk position, score), best first


@dataclass(frozen=True)
class Selection:
    """Which chunks a search may return: the request's `filters` (retrieval.search.Filters, only
    when active), the review status of each article as the review log says now (`statuses`;
    an article missing from it counts as submitted), and the same selection already evaluated
    over the build's chunks in memory (`mask`, bool of shape (n_chunks,)). A backend applies
    whichever it can: the embedded one the mask, PostgreSQL the filters as SQL."""

    filters: Filters
    statuses: Mapping[str, ReviewStatus]
    mask: np.ndarray

    def allowed_articles(self, article_ids: Sequence[str]) -> list[str] | None:
        """The articles among `article_ids` whose derived status passes the review-status
        filter, or None when that filter is off."""
        wanted = self.filters.review_status
        if not wanted:
            return None
        return [a for a in article_ids if self.statuses.get(a, ReviewStatus.SUBMITTED) in wanted]


class SearchBackend(ABC):
    """One build's chunks, searchable. Scores: dense is the inner product of unit vectors (the
    cosine, -1..1); lexical is Lucene BM25 (k1 = 1.2, b = 0.75, indexer/lexical.py) over the
    stemmed tokens of title + section path + text. Ties are broken by chunk position."""

    name: str = ""

    @abstractmethod
    def dense(self, vector: np.ndarray, depth: int, selection: Selection | None = None) -> Ranked:
        """The `depth` chunks nearest to `vector` (dim,) among those selected, best first."""

    @abstractmethod
    def dense_scores(self, vector: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The cosine of `vector` with each chunk in `ids` (int64), as float32 (len(ids),)."""

    @abstractmethod
    def lexical(self, tokens: Sequence[str], depth: int, selection: Selection | None = None) -> Ranked:
        """The `depth` chunks with the highest BM25 for the stemmed query `tokens` (a token given
        twice counts twice; unknown tokens count nothing) among those selected, best first;
        only chunks scoring above 0."""

    @abstractmethod
    def lexical_scores(self, tokens: Sequence[str], ids: np.ndarray) -> np.ndarray:
        """The BM25 of each chunk in `ids` for `tokens`, as float32 (len(ids),); 0 where none matches."""

    def over(self, index: LoadedIndex) -> SearchBackend:
        """This backend for another build (a server swapping to a newly published one)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (nothing to release by default)."""
        return None

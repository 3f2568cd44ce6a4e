"""Which passages a search's filters admit, computed over per-chunk columns with numpy.

`Filters.admits` says it for one chunk; a filtered search needs it for every chunk of the
index, and calling it per chunk costs a Python call each (tens of milliseconds per query at
MedQuAD scale, 30,000+ chunks). `ChunkColumns` holds what the filters read as arrays, built once
per loaded index, so a filtered query is a handful of vector operations. The answer is the same
as `Filters.admits` for every chunk (tests/test_admission.py checks it on every combination).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from indexer.chunking import Chunk
from indexer.vocabulary import Audience, EvidenceKind, ReviewStatus

if TYPE_CHECKING:  # retrieval.search imports this module
    from retrieval.reviews import ArticleReview
    from retrieval.search import Filters

_KIND_BIT = {kind: 1 << n for n, kind in enumerate(EvidenceKind)}
_AUDIENCE = {audience: n for n, audience in enumerate(Audience)}
_STATUS = {status: n for n, status in enumerate(ReviewStatus)}
_NO_DATE = -1


class ChunkColumns:
    """Per-chunk arrays (len(chunks),) of what filters read: the article (as an index into
    `article_ids`), whether the passage cites a retracted source, its evidence kinds (bits),
    its audience and its last-updated day (proleptic ordinal; -1 for none)."""

    def __init__(self, chunks: Sequence[Chunk]):
        self.article_ids: list[str] = list(dict.fromkeys(c.article_id for c in chunks))
        position = {a: n for n, a in enumerate(self.article_ids)}
        n = len(chunks)
        self.article = np.fromiter((position[c.article_id] for c in chunks), dtype=np.int64, count=n)
        self.retracted = np.fromiter((any(r.retracted for r in c.references) for c in chunks), dtype=bool, count=n)
        self.kinds = np.fromiter((sum(_KIND_BIT[k] for k in set(c.evidence_kinds)) for c in chunks), dtype=np.int64, count=n)
        self.audience = np.fromiter((_AUDIENCE[c.audience] for c in chunks), dtype=np.int64, count=n)
        self.updated = np.fromiter((c.last_updated.toordinal() if c.last_updated else _NO_DATE for c in chunks), dtype=np.int64, count=n)
        self._statuses_of: tuple[Mapping[str, ArticleReview], np.ndarray] | None = None  # (the reviews mapping, status code per article)

    def _status_codes(self, reviews: Mapping[str, ArticleReview]) -> np.ndarray:
        """The review status code of each article (submitted when the log has none), cached for as
        long as the review book hands out the same mapping (it makes a new one when the log changes)."""
        cached = self._statuses_of
        if cached is not None and cached[0] is reviews:  # the mapping itself is kept, so identity cannot be reused
            return cached[1]
        submitted = _STATUS[ReviewStatus.SUBMITTED]
        codes = np.fromiter((_STATUS[reviews[a].status] if a in reviews else submitted for a in self.article_ids),
                            dtype=np.int64, count=len(self.article_ids))
        self._statuses_of = (reviews, codes)
        return codes

    def admitted(self, filters: Filters, reviews: Mapping[str, ArticleReview]) -> np.ndarray:
        """A boolean mask (len(chunks),): True where `filters.admits(chunk, derived status)` is."""
        mask = np.ones(len(self.article), dtype=bool)
        if filters.retracted == "exclude":
            mask &= ~self.retracted
        if filters.review_status:
            wanted = np.zeros(len(_STATUS), dtype=bool)
            wanted[[_STATUS[s] for s in filters.review_status]] = True
            mask &= wanted[self._status_codes(reviews)][self.article]
        if filters.evidence_kind:
            mask &= (self.kinds & sum(_KIND_BIT[k] for k in set(filters.evidence_kind))) != 0
        if filters.audience:
            allowed = [_AUDIENCE[a] for a in set(filters.audience)] + [_AUDIENCE[Audience.BOTH]]
            mask &= np.isin(self.audience, allowed)
        if filters.updated_since:
            mask &= (self.updated != _NO_DATE) & (self.updated >= filters.updated_since.toordinal())
        return mask

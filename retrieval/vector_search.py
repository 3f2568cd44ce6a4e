"""Top-k inner-product search over one build's unit vectors (chunks, or section headings),
with exact scores at every size, and cheaper per query on large builds.

A flat FAISS index reads every float32 vector for every query: at MedQuAD scale (32,000
chunks x 384 dimensions, 49 MB) that is 3.6 ms of a single core per query, the largest part
of a search. From `QUANTIZE_FROM` vectors (10,000) on, candidates come instead from an 8-bit scalar-
quantised copy (FAISS `IndexScalarQuantizer`, `QT_8bit_uniform`: a quarter of the bytes to read),
`OVERFETCH` times as many as asked, and are then re-scored exactly from the float32 vectors,
so the scores returned are the exact cosines and only a vector that the quantised copy ranks
far below its place could be missed. Measured on 300 MedQuAD questions over the MedQuAD corpus
(31,908 chunks, all-MiniLM-L6-v2, one thread): the exact top 100 found in full (recall@100
1.000, top 10 identical) in 1.22 ms per query against 3.57 ms flat; without over-fetching,
recall@100 0.995. One range for every dimension (`QT_8bit_uniform`) rather than one per dimension
(`QT_8bit`) decodes faster and found the same: 300 MedQuAD questions, recall@100 1.000 and the same
top 10 for both, 0.96-1.19 against 1.47-1.68 ms per query for the chunks, 0.54-0.56 against 0.66-0.67 ms
for the 16,423 section headings (three alternating runs, one process). (HNSW, FAISS `IndexHNSWFlat` M=32, was faster still but found only 0.926-0.985
of the top 100 at efSearch 128-256, and takes 4-10 s to build on each swap.)
"""

from __future__ import annotations

import math

import numpy as np

# Below this many vectors a flat scan costs about 1 ms or less: stay flat. Lowered from 20,000 so that
# MedQuAD's 16,423 section headings are quantised too: a cached search 6.2-6.5 ms against 7.1-7.5 ms
# (the flat scan of 25 MB competes for cache with the chunk scan), the same top 10 for 298 of 300
# questions, the other 2 differing only in which of two sections with the very same cosine fills
# the last candidate place.
QUANTIZE_FROM = 10_000
OVERFETCH = 1.5  # candidates asked of the quantised copy per result, before exact re-scoring


class VectorSearch:
    """Search over `vectors` (n, dim), float32, L2-normalised rows; ids are row numbers.

    `flat` may be an existing FAISS flat inner-product index over the same rows (the build's
    `vectors.faiss`), used as it is below `quantize_from` vectors; otherwise one is made.
    `quantize_from` = 0 never quantises (always exact flat search)."""

    def __init__(self, vectors: np.ndarray, flat=None, quantize_from: int = QUANTIZE_FROM, overfetch: float = OVERFETCH):
        import faiss

        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = self.vectors.shape
        self.overfetch = overfetch
        self.quantized = bool(quantize_from) and n >= quantize_from
        if self.quantized:
            self._index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit_uniform, faiss.METRIC_INNER_PRODUCT)
            self._index.train(self.vectors)  # one range over all dimensions: deterministic
            self._index.add(self.vectors)
        elif flat is not None:
            self._index = flat
        else:
            self._index = faiss.IndexFlatIP(dim)
            if n:
                self._index.add(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, vector: np.ndarray, depth: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The `depth` rows most similar to `vector` (dim,), as (row, cosine) best first, ties
        by row; only rows in `allowed` (sorted int64 row ids) when given. Fewer when fewer rows
        (or allowed rows) exist."""
        import faiss

        # One OpenMP thread, set on the calling thread: the setting is per thread, and a server
        # searches on its pool's threads, where FAISS would otherwise start a team of threads
        # for every query that spin against each other and the other requests (measured at
        # MedQuAD scale through the app: 33 ms per cached search against 8.5 ms).
        faiss.omp_set_num_threads(1)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        limit = len(self) if allowed is None else len(allowed)
        depth = min(depth, limit)
        if depth <= 0:
            return []
        params = None
        if allowed is not None:
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(allowed)
        if self.quantized:
            fetch = min(limit, max(depth, math.ceil(depth * self.overfetch)))
            _, found = self._index.search(query, fetch, params=params)
            ids = found[0][found[0] >= 0]
            scores = np.einsum("ij,j->i", self.vectors[ids], query[0])  # the exact cosines of the candidates
        else:
            found_scores, found = self._index.search(query, depth, params=params)
            keep = found[0] >= 0
            ids, scores = found[0][keep], found_scores[0][keep]
        # Best first, ties by row (FAISS leaves equal scores in heap order).
        order = np.lexsort((ids, -scores))[:depth]
        return [(int(ids[j]), float(scores[j])) for j in order]

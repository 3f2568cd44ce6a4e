"""retrieval.vector_search: exact flat search on small builds; on large ones, candidates from an
8-bit quantised copy re-scored exactly, which must return what an exact scan returns."""

import numpy as np
import pytest

from retrieval.vector_search import VectorSearch


def unit_rows(rng, n, dim, centres=40):
    """Clustered unit vectors, like embeddings of a corpus with many near-duplicate passages."""
    base = rng.standard_normal((centres, dim)).astype(np.float32)
    x = base[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors, query, depth, allowed=None):
    scores = vectors @ query
    ids = np.arange(len(vectors)) if allowed is None else allowed
    order = sorted(ids, key=lambda i: (-scores[i], i))[:depth]
    return [int(i) for i in order], scores


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    vectors = unit_rows(rng, 3000, 48)
    queries = unit_rows(rng, 40, 48)
    return vectors, queries


@pytest.mark.parametrize("quantize_from", [0, 1], ids=["exact", "quantised"])
def test_the_top_results_and_their_scores_are_those_of_an_exact_scan(data, quantize_from):
    vectors, queries = data
    search = VectorSearch(vectors, quantize_from=quantize_from)
    assert search.quantized == bool(quantize_from)
    for q in queries:
        hits = search.search(q, 50)
        expected, scores = brute_force(vectors, q, 50)
        assert [i for i, _ in hits][:10] == expected[:10]
        assert len({i for i, _ in hits} & set(expected)) >= 49  # at most one near-tie swapped at the edge
        assert np.allclose([s for _, s in hits], scores[[i for i, _ in hits]], atol=1e-5), "scores are the exact cosines"
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


@pytest.mark.parametrize("quantize_from", [0, 1], ids=["exact", "quantised"])
def test_only_allowed_rows_are_returned(data, quantize_from):
    vectors, queries = data
    search = VectorSearch(vectors, quantize_from=quantize_from)
    allowed = np.arange(0, len(vectors), 7, dtype=np.int64)
    hits = search.search(queries[0], 20, allowed)
    assert [i for i, _ in hits] == brute_force(vectors, queries[0], 20, allowed)[0]
    assert search.search(queries[0], 20, allowed[:3]) and len(search.search(queries[0], 20, allowed[:3])) == 3


def test_large_builds_are_quantised_and_small_ones_are_not(data):
    vectors, _ = data
    assert not VectorSearch(vectors).quantized  # 3,000 rows: below the default threshold
    assert VectorSearch(vectors, quantize_from=3000).quantized
    assert not VectorSearch(vectors, quantize_from=0).quantized


def test_asking_for_more_than_there_is_returns_everything_once():
    rng = np.random.default_rng(1)
    vectors = unit_rows(rng, 5, 8, centres=2)
    for quantize_from in (0, 1):
        hits = VectorSearch(vectors, quantize_from=quantize_from).search(vectors[0], 10)
        assert sorted(i for i, _ in hits) == list(range(5))
    assert VectorSearch(np.zeros((0, 8), dtype=np.float32)).search(vectors[0], 10) == []


@pytest.mark.parametrize("quantize_from", [0, 1], ids=["exact", "quantised"])
def test_equal_scores_come_back_by_row(quantize_from):
    rng = np.random.default_rng(5)
    base = rng.normal(size=(4, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    vectors = np.repeat(base, 25, axis=0)[rng.permutation(100)]  # 25 identical copies of each of 4 vectors, shuffled
    hits = VectorSearch(vectors, quantize_from=quantize_from).search(vectors[0], 60)
    for (row_a, score_a), (row_b, score_b) in zip(hits, hits[1:]):
        assert score_a > score_b or (score_a == score_b and row_a < row_b)

"""Micro-batching: concurrent queries share one model call and each gets its own vector."""

import threading

import numpy as np
import pytest

from retrieval.batching import QueryBatcher

from fakes import FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []
        self.release = threading.Event()

    def encode_queries(self, texts):
        self.calls.append(list(texts))
        self.release.wait(5)  # hold the first call so that the others queue up behind it
        return super().encode_queries(texts)


def test_concurrent_queries_share_a_model_call_and_get_their_own_vectors():
    model = CountingEmbedder()
    batcher = QueryBatcher(model.encode_queries, window_ms=5)
    queries = [f"iron deficiency question {i}" for i in range(9)]
    results: dict[str, np.ndarray] = {}

    def ask(q):
        results[q] = batcher.embed(q)

    threads = [threading.Thread(target=ask, args=(q,)) for q in queries]
    threads[0].start()
    while not model.calls:
        pass
    for t in threads[1:]:
        t.start()
    model.release.set()
    for t in threads:
        t.join(10)
    assert set(results) == set(queries)
    for q in queries:
        np.testing.assert_allclose(results[q], FakeEmbedder().encode_queries([q])[0])
    assert len(model.calls) < len(queries), "queries that waited together were embedded together"
    assert sum(len(c) for c in model.calls) == len(queries) and max(len(c) for c in model.calls) > 1


def test_an_error_in_the_model_reaches_every_caller_of_that_batch():
    def broken(texts):
        raise RuntimeError("model failed")

    batcher = QueryBatcher(broken, window_ms=1)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.embed("anything")
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.embed("and the next one too")


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        QueryBatcher(FakeEmbedder().encode_queries, window_ms=-1)

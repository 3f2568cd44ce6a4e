"""Answers' sentence vectors are kept between requests: a sentence seen before does not reach
the model again, the answer is the same as without the cache, and the cache is bounded."""

import numpy as np
import pytest

from indexer.index_store import load_index
from retrieval.answers import build_answer
from retrieval.search import SearchService
from retrieval.vector_cache import VectorCache

from fakes import FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    """FakeEmbedder that records every document text it encodes."""

    def __init__(self):
        super().__init__()
        self.documents: list[str] = []

    def encode_documents(self, texts, batch_size=32, progress=None):
        self.documents.extend(texts)
        return super().encode_documents(texts, batch_size, progress)


def encoder(calls: list[list[str]]):
    fake = FakeEmbedder()

    def encode(texts):
        calls.append(list(texts))
        return fake.encode_documents(texts)
    return encode


def test_only_unseen_texts_reach_the_model_once_each():
    calls: list[list[str]] = []
    cache = VectorCache(10)
    first = cache.embed(["iron deficiency", "oral iron", "iron deficiency"], encoder(calls))
    assert calls == [["iron deficiency", "oral iron"]]
    second = cache.embed(["oral iron", "ferritin"], encoder(calls))
    assert calls[1] == ["ferritin"]
    assert np.array_equal(second[0], first[1]) and first.shape == (3, 256) and np.array_equal(first[0], first[2])
    assert (cache.hits, cache.misses) == (1, 4)


def test_bounded_least_recently_used_first():
    calls: list[list[str]] = []
    cache = VectorCache(2)
    cache.embed(["a", "b"], encoder(calls))
    cache.embed(["a"], encoder(calls))  # "a" used last: "b" goes first
    cache.embed(["c"], encoder(calls))
    assert len(cache) == 2
    cache.embed(["a", "b"], encoder(calls))
    assert calls[-1] == ["b"]
    off = VectorCache(0)
    off.embed(["a"], encoder(calls))
    off.embed(["a"], encoder(calls))
    assert calls[-2:] == [["a"], ["a"]] and len(off) == 0
    with pytest.raises(ValueError):
        VectorCache(-1)


def test_a_failed_model_call_keeps_nothing():
    cache = VectorCache(10)

    def broken(texts):
        raise RuntimeError("model failed")
    with pytest.raises(RuntimeError):
        cache.embed(["a"], broken)
    assert len(cache) == 0
    with pytest.raises(ValueError, match="1 texts"):
        cache.embed(["a"], lambda texts: np.zeros((2, 4), np.float32))


def test_a_repeated_question_embeds_no_sentence_again_and_gives_the_same_answer(default_corpus_index):
    embedder = CountingEmbedder()
    service = SearchService(load_index(default_corpus_index), embedder)
    question = "how is iron deficiency anaemia treated?"
    first = build_answer(service, question, question)
    embedded = len(embedder.documents)
    assert first.key_points and embedded >= len(first.key_points), "the first answer ran the model over its sentences"
    again = build_answer(service, question, question)
    assert len(embedder.documents) == embedded, "no sentence reached the model twice"
    assert [p.text for p in again.key_points] == [p.text for p in first.key_points]

    uncached = SearchService(load_index(default_corpus_index), CountingEmbedder(), passage_cache_size=0)
    assert [p.text for p in build_answer(uncached, question, question).key_points] == [p.text for p in first.key_points]
    # A swap to another build keeps the vectors (they depend on the model and the text only).
    swapped = service.over(load_index(default_corpus_index))
    build_answer(swapped, question, question)
    assert len(embedder.documents) == embedded

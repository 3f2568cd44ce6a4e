"""Micro-batching: concurrent queries share one model call and each gets its own vector."""

import threading
import time

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
    deadline = time.monotonic() + 10
    while batcher.in_flight < len(queries) - 1 and time.monotonic() < deadline:  # all queued behind the first
        time.sleep(0.001)
    model.release.set()
    for t in threads:
        t.join(10)
    assert set(results) == set(queries)
    for q in queries:
        np.testing.assert_allclose(results[q], FakeEmbedder().encode_queries([q])[0])
    assert len(model.calls) < len(queries), "queries that waited together were embedded together"
    assert sum(len(c) for c in model.calls) == len(queries) and max(len(c) for c in model.calls) > 1


def test_a_lone_query_is_encoded_on_its_own_thread_and_one_behind_a_busy_model_waits_for_the_worker():
    model = CountingEmbedder()
    threads_used: list[str] = []

    def encode(texts):
        threads_used.append(threading.current_thread().name)
        return model.encode_queries(texts)

    batcher = QueryBatcher(encode, window_ms=5)
    model.release.set()
    np.testing.assert_allclose(batcher.embed("ferritin"), FakeEmbedder().encode_queries(["ferritin"])[0])
    assert threads_used == [threading.current_thread().name]  # no hand-off to the worker and back
    with batcher.arriving() as arrival:  # its own announcement does not send it to the worker
        batcher.embed("hepcidin", arrival=arrival)
    assert threads_used[-1] == threading.current_thread().name and batcher.batches == 2

    model.release.clear()
    busy = threading.Thread(target=batcher.embed, args=("transferrin",))
    busy.start()
    while len(model.calls) < 3:
        time.sleep(0.001)
    waiting = threading.Thread(target=batcher.embed, args=("iron studies",))
    waiting.start()
    deadline = time.monotonic() + 10
    while batcher.in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert batcher.in_flight == 1  # queued for the worker, not spinning on the model lock
    model.release.set()
    busy.join(10)
    waiting.join(10)
    assert threads_used[-1] == "medkb-query-batcher" and batcher.in_flight == 0


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


class TimedEmbedder(FakeEmbedder):
    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []

    def encode_queries(self, texts):
        self.calls.append(list(texts))
        return super().encode_queries(texts)


def test_a_lone_query_does_not_wait_out_the_window():
    batcher = QueryBatcher(TimedEmbedder().encode_queries, window_ms=300)
    batcher.embed("warm up the worker")
    started = time.perf_counter()
    with batcher.arriving() as arrival:
        batcher.embed("ferritin in pregnancy", arrival=arrival)
    assert time.perf_counter() - started < 0.15, "nobody else was on the way: the model ran at once"


def test_the_window_waits_for_a_search_on_its_way_and_both_share_a_call():
    model = TimedEmbedder()
    batcher = QueryBatcher(model.encode_queries, window_ms=2000)
    batcher.embed("warm up the worker")
    model.calls.clear()
    results = {}
    with batcher.arriving() as second:  # announced, still reading its query
        first = threading.Thread(target=lambda: results.setdefault("first", batcher.embed("iron studies")))
        first.start()
        time.sleep(0.2)  # the first query is queued and its batch is waiting for this one (window 2 s)
        results["second"] = batcher.embed("transferrin saturation", arrival=second)
    first.join(5)
    assert model.calls == [["iron studies", "transferrin saturation"]]
    np.testing.assert_allclose(results["second"], FakeEmbedder().encode_queries(["transferrin saturation"])[0])


def test_an_announced_search_that_never_queues_holds_a_batch_no_longer_than_the_window():
    batcher = QueryBatcher(TimedEmbedder().encode_queries, window_ms=200)
    batcher.embed("warm up the worker")
    with batcher.arriving():  # e.g. its vector was cached after all, and it has not said so
        started = time.perf_counter()
        batcher.embed("hepcidin")
        waited = time.perf_counter() - started
    assert 0.15 < waited < 1.5


@pytest.mark.parametrize("query, retriever", [
    ("oral iron first-line", "lexical"),  # BM25 alone never runs the model
    ("the of and", "hybrid"),  # no content words: answered "no match" without the model
])
def test_a_search_that_needs_no_model_call_does_not_hold_up_the_others(tiny_corpus, tmp_path, query, retriever):
    from indexer.build import build_index
    from indexer.index_store import load_index
    from retrieval.search import RetrievalSettings, SearchService

    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())
    model = TimedEmbedder()
    service = SearchService(load_index(tmp_path / "index"), model, cache_size=0, batch_window_ms=3000, ranker=None)
    service.search("warm up the worker")
    inside, leave = threading.Event(), threading.Event()
    review_statuses = service.review_statuses

    def slow_statuses():  # the model-free search is held after reading its query, still inside search()
        if threading.current_thread().name == "model-free":
            inside.set()
            leave.wait(10)
        return review_statuses()

    service.review_statuses = slow_statuses
    other = threading.Thread(target=service.search, args=(query,), kwargs={"settings": RetrievalSettings(retriever=retriever)}, name="model-free")
    other.start()
    try:
        assert inside.wait(5)
        started = time.perf_counter()
        service.search("intravenous iron malabsorption")
        waited = time.perf_counter() - started
    finally:
        leave.set()
        other.join(10)
    assert waited < 1.5, f"the dense search waited {waited:.1f} s for a search that never calls the model (window 3 s)"
    assert service._batcher._arriving == 0


def test_a_model_answering_with_the_wrong_number_of_vectors_fails_that_batch_and_the_next_query_is_answered():
    model = FakeEmbedder()
    broken = {"on": True}

    def encode(texts):
        vectors = model.encode_queries(texts)
        return vectors[:-1] if broken["on"] else vectors

    batcher = QueryBatcher(encode, window_ms=0)
    with pytest.raises(ValueError, match="vectors"):
        batcher.embed("ferritin", timeout=5)
    broken["on"] = False
    np.testing.assert_allclose(batcher.embed("ferritin", timeout=5), model.encode_queries(["ferritin"])[0])


def test_many_threads_each_get_their_own_vector_or_the_error_and_nothing_is_left_in_flight():
    """Searches on many threads at once, through both paths (a lone query on its own thread, the
    others batched on the worker), with a model that sometimes fails or answers short: every
    caller gets its own vector or an error, none hangs, the model is never run twice at once."""
    import random

    running, overlaps, threads_used = [0], [0], set()
    guard = threading.Lock()

    def encode(texts):
        with guard:
            running[0] += 1
            overlaps[0] += running[0] > 1
            threads_used.add(threading.current_thread().name == "medkb-query-batcher")
        try:
            time.sleep(random.random() * 0.002)
            if any(t.startswith("fail") for t in texts):
                raise RuntimeError("model failed")
            if any(t.startswith("short") for t in texts):
                return np.zeros((len(texts) - 1, 2), np.float32)
            return np.array([[float(t.split()[1]), len(texts)] for t in texts], np.float32)
        finally:
            with guard:
                running[0] -= 1

    batcher = QueryBatcher(encode, window_ms=1, max_batch=8)
    wrong: list[tuple[str, object]] = []
    answered = [0]

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        for j in range(60):
            kind = rng.choices(["ok", "fail", "short"], [0.9, 0.07, 0.03])[0]
            text = f"{kind} {seed * 1000 + j}"
            try:
                if rng.random() < 0.7:
                    with batcher.arriving() as arrival:
                        time.sleep(rng.random() * 0.001)  # reading the query
                        vector = batcher.embed(text, timeout=20, arrival=arrival)
                else:
                    vector = batcher.embed(text, timeout=20)
            except (RuntimeError, ValueError):
                continue  # its own batch's error: a failing query, or one batched with it
            except BaseException as exc:
                wrong.append((text, exc))
                continue
            with guard:
                answered[0] += 1
            if kind != "ok" or vector[0] != seed * 1000 + j:
                wrong.append((text, vector))

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert wrong == []
    assert (batcher.in_flight, batcher._arriving, overlaps[0]) == (0, 0, 0)
    assert threads_used == {True, False}, "both the caller's own thread and the worker encoded"
    assert batcher.queries == answered[0] > 0, "every vector of a batch that succeeded reached its caller"


def test_searches_on_many_threads_find_what_each_finds_alone(tiny_corpus, tmp_path):
    """Through SearchService (query cache, announcements, both batcher paths): a search run
    alongside many others gets the passages it gets alone, or its model's error; a vector never
    reaches, or is cached for, another query."""
    import random

    from indexer.build import build_index
    from indexer.index_store import load_index
    from retrieval.search import SearchService

    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())

    class Flaky(FakeEmbedder):
        def encode_queries(self, texts):
            time.sleep(random.random() * 0.002)
            if any("zinc" in t for t in texts):
                raise RuntimeError("model failed")
            return super().encode_queries(texts)

    words = "iron ferritin microcytosis lead thalassemia transfusion intravenous oral deficiency anaemia zinc".split()
    rng = random.Random(0)
    queries = [" ".join(rng.sample(words, 3)) for _ in range(40)]

    def ids(service, query):
        try:
            return [(h.chunk.id, round(h.score, 6)) for h in service.search(query, 5).hits]
        except RuntimeError:
            return "error"

    solo = SearchService(load_index(tmp_path / "index"), Flaky(), cache_size=0)
    alone = {q: ids(solo, q) for q in queries}  # one at a time: each on its own, errors only its own
    assert any(v == "error" for v in alone.values()) and any(v and v != "error" for v in alone.values())
    service = SearchService(load_index(tmp_path / "index"), Flaky(), cache_size=64)
    wrong: list = []

    def caller(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(25):
            q = r.choice(queries)
            got = ids(service, q)
            if got != alone[q] and got != "error":  # an error is its batch's: a query batched with a failing one gets it too
                wrong.append((q, got, alone[q]))

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and wrong == []
    assert (service._batcher.in_flight, service._batcher._arriving) == (0, 0)
    assert [ids(service, q) for q in queries] == [alone[q] for q in queries], "nothing wrong was left in the query cache"

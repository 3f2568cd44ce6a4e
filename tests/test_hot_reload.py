"""A running server swaps to each newly published build without a restart: in-process with
TestClient (fast), and a real uvicorn process (slow tier)."""

import dataclasses
import gc
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest
import symspellpy
from fastapi.testclient import TestClient

from indexer import index_store
from indexer.build import build_index
from indexer.build_cache import BuildCache
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.query_understanding import drug_speller
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from live_corpus import make_corpus, write_article

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


class Counted(FakeEmbedder):
    """Counts models made: a swap must reuse the one it has."""

    made = 0

    def __init__(self):
        super().__init__()
        Counted.made += 1


@pytest.fixture
def live(tmp_path):
    """(corpus, index root, build cache, settings) with one build published."""
    corpus = make_corpus(tmp_path / "corpus", 12)
    root = tmp_path / "index"
    cache = BuildCache(tmp_path / "cache")
    build_index([corpus], root, FakeEmbedder(), cache=cache)
    settings = Settings(index_dir=root, reload_seconds=0.05, conversations_db=tmp_path / "conversations.sqlite")
    return corpus, root, cache, settings


def make_app(settings):
    Counted.made = 0
    return create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), Counted()))


def wait_for(condition, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_server_serves_a_new_build_without_restart(live):
    corpus, root, cache, settings = live
    app = make_app(settings)
    with TestClient(app) as client:
        before = client.get("/healthz").json()
        assert before["build"] == index_store.current_dir(root).name == before["published"] and before["loaded_at"]
        assert not any(p["article_id"] == "topic-050" for p in client.get("/api/search", params={"q": "what causes topic50"}).json()["results"])
        old_index = weakref.ref(app.state.search.index)

        write_article(corpus, 50)
        (corpus / "topic-004.md").unlink()
        new = build_index([corpus], root, FakeEmbedder(), cache=cache).directory
        wait_for(lambda: client.get("/healthz").json()["build"] == new.name, what="the swap")
        after = client.get("/healthz").json()
        assert after["published"] == new.name and after["loaded_at"] > before["loaded_at"] and after["articles"] == 12
        body = client.get("/api/search", params={"q": "what causes topic50", "k": 3}).json()
        assert body["index"]["build"] == new.name and body["results"][0]["article_id"] == "topic-050"
        for retriever_query in ("what causes topic4", "topic4 causes evaluation"):
            results = client.get("/api/search", params={"q": retriever_query, "k": 10}).json()["results"]
            assert results and all(p["article_id"] != "topic-004" for p in results), "a deleted article is gone after the swap"
        wait_for(lambda: gc.collect() is not None and old_index() is None, what="the old build to be freed")
        assert Counted.made == 1, "the model is loaded once and shared across swaps"
        assert app.state.reloader.swaps == 1


def test_a_deleted_article_is_served_nowhere_after_the_swap(live):
    """Not only search: the article's API entry and page, answers, the review queue and what's new."""
    corpus, root, cache, settings = live
    app = make_app(settings)
    question = "What causes topic4?"

    def served(client) -> dict[str, bool]:
        return {
            "search": any(p["article_id"] == "topic-004" for r in ("hybrid", "dense", "lexical")
                          for p in client.get("/api/search", params={"q": question, "k": 50, "retriever": r}).json()["results"]),
            "ask": "topic-004" in client.post("/api/ask", json={"question": question}).text,
            "api article": client.get("/api/articles/topic-004").status_code == 200,
            "article page": client.get("/articles/topic-004").status_code == 200,
            "search page": "topic-004" in client.get("/", params={"q": question}).text,
            "review queue": "topic-004" in client.get("/reviews").text,
            "what's new": "topic-004" in client.get("/new.atom").text,
        }

    with TestClient(app) as client:
        assert all(served(client).values()), served(client)
        (corpus / "topic-004.md").unlink()
        new = build_index([corpus], root, FakeEmbedder(), cache=cache).directory
        wait_for(lambda: client.get("/healthz").json()["build"] == new.name, what="the swap")
        assert not any(served(client).values()), served(client)
        assert client.get("/api/articles/topic-005").status_code == 200, "the others are still served"


def test_a_damaged_build_is_not_swapped_in(live):
    corpus, root, cache, settings = live
    app = make_app(dataclasses.replace(settings, reload_seconds=0))  # checks driven by the test
    with TestClient(app) as client:
        served = client.get("/healthz").json()["build"]
        write_article(corpus, 60)
        damaged = build_index([corpus], root, FakeEmbedder(), cache=cache).directory
        data = bytearray((damaged / "chunks.jsonl").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (damaged / "chunks.jsonl").write_bytes(bytes(data))
        assert app.state.reloader.check_now() is False
        health = client.get("/healthz").json()
        assert health["build"] == served and health["published"] == damaged.name
        assert "chunks.jsonl does not match its SHA-256" in health["reload_refused"]
        assert health["status"] == "degraded" and health["conversations"]["status"] == "ok", health
        assert client.get("/api/search", params={"q": "iron"}).status_code == 200
        assert app.state.reloader.check_now() is False, "refused once, not retried every tick"

        write_article(corpus, 61)
        good = build_index([corpus], root, FakeEmbedder(), cache=cache).directory
        old = {c.id: c for c in app.state.search.index.chunks}
        assert app.state.reloader.check_now() is True
        health = client.get("/healthz").json()
        assert health["build"] == good.name and health["reload_refused"] is None and health["status"] == "ok", health
        new = app.state.search.index.chunks
        shared = [c for c in new if old.get(c.id) is c]
        assert len(shared) == len(old) and len(new) == len(old) + 4, "unchanged chunks are reused, not parsed again"


@pytest.mark.parametrize("fault", ["damaged", "another encoder"])
def test_a_refused_build_is_logged_in_one_well_formed_line(live, caplog, fault):
    """Which build is refused, which one is still served, then the refusal (why, and what to run)
    once, with one full stop: the reason's own closing punctuation was joined to '; still serving'."""
    import logging
    import re

    from fakes import fake_for_encoder

    corpus, root, cache, settings = live
    caplog.set_level(logging.INFO)
    app = make_app(dataclasses.replace(settings, reload_seconds=0))
    with TestClient(app):
        served = app.state.search.index.directory.name
        write_article(corpus, 60)
        refused = build_index([corpus], root, fake_for_encoder("onnx-int8") if fault == "another encoder" else FakeEmbedder(), cache=cache).directory
        if fault == "damaged":
            (refused / "chunks.jsonl").write_bytes((refused / "chunks.jsonl").read_bytes()[:-10])
        assert app.state.reloader.check_now() is False
    lines = [r.getMessage() for r in caplog.records if r.name == "medkb.server" and r.levelno == logging.WARNING]
    assert len(lines) == 1, lines
    line = lines[0]
    head = f"not serving newly published build {refused.name}, still serving {served}: "
    assert line.startswith(head), line
    said = line.removeprefix(head)
    what = "onnx-int8 encoder, but queries would be encoded with torch" if fault == "another encoder" else "chunks.jsonl"
    assert what in said and "Rebuild it with `" in said, said
    # The damaged build was named twice: "...build B, still serving A: index build <root>/builds/B is damaged: ..."
    assert line.count(refused.name) == 1 and str(refused) not in line, line
    if fault == "damaged":
        assert said.startswith("it is damaged: chunks.jsonl "), said
    assert said.endswith(".") and not said.endswith(".."), said
    assert not re.search(r"[.;:,]\s*[.;:,]", line), line


def test_a_refusal_that_names_the_build_itself_names_it_once():
    """PostgreSQL's refusals open with the build ("build B is not in the database ..."): the line
    said "not serving newly published build B, still serving A: build B is not in the database"."""
    from server.reload import refusal_warning

    b, a = "20261201t075550397474ca655c", "20261201t075547877764f4f87c"
    where = "postgresql://medkb:***@db.example.org:5432/medkb"
    line = refusal_warning(b, a, f"build {b} is not in the database {where} (dropped, or never finished)")
    assert line == f"not serving newly published build {b}, still serving {a}: it is not in the database {where} (dropped, or never finished).", line
    line = refusal_warning(b, a, f"build {b}: 12 chunks but postings for 11")
    assert line == f"not serving newly published build {b}, still serving {a}: 12 chunks but postings for 11.", line
    # Another build named, or the build's name inside a longer word, is the message's own business.
    assert refusal_warning(b, a, f"build {a} is not in the database").endswith(f": build {a} is not in the database.")
    assert refusal_warning("b1", a, "build b12 is not in the database").endswith(": build b12 is not in the database.")


def test_a_damaged_build_under_the_index_root_is_named_once():
    """The index root's refusals open with the build's folder ("index build <root>/builds/B is
    damaged: ..."): the line said "not serving newly published build B, still serving A: index
    build /srv/medkb/index/builds/B is damaged: ..." and named B twice."""
    from server.reload import refusal_warning

    b, a = "20261201T081500-123456-0a1b2c3d", "20261201T081000-654321-4e5f6a7b"
    where = f"/srv/medkb files/index/builds/{b}"  # a space in the path: the whole folder is one name
    rebuild = "Rebuild it with `medkb index corpus` (or `make serve`, which rebuilds a stale or damaged index)."
    damaged = f"index build {where} is damaged: chunks.jsonl has 1234 bytes, the manifest says 1244. {rebuild}"
    line = refusal_warning(b, a, damaged, where)
    assert line == f"not serving newly published build {b}, still serving {a}: it is damaged: chunks.jsonl has 1234 bytes, the manifest says 1244. {rebuild}", line
    line = refusal_warning(b, a, f"index build {where}: manifest.json is missing. {rebuild}", where)
    assert line == f"not serving newly published build {b}, still serving {a}: manifest.json is missing. {rebuild}", line
    line = refusal_warning(b, a, f"index {where} has format 3, this medkb reads format 4. {rebuild}", where)
    assert line == f"not serving newly published build {b}, still serving {a}: it has format 3, this medkb reads format 4. {rebuild}", line
    # Another build's folder, or a message that does not open with the build, is left as it is.
    other = f"/srv/medkb files/index/builds/{a}"
    assert refusal_warning(b, a, f"index build {other} is damaged: x", where).endswith(f": index build {other} is damaged: x.")
    assert refusal_warning(b, a, f"the index was built with the torch encoder. {rebuild}", where).endswith(f"{a}: the index was built with the torch encoder. {rebuild}")


def test_no_request_fails_during_swaps_and_each_sees_one_build(live):
    corpus, root, cache, settings = live
    app = make_app(dataclasses.replace(settings, reload_seconds=0))
    builds: set[str] = set()
    failures: list[str] = []
    stop = threading.Event()
    with TestClient(app) as client:

        def hammer(n: int) -> None:
            while not stop.is_set():
                r = client.get("/api/search", params={"q": f"what causes topic{n}", "k": 5})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                builds.add(r.json()["index"]["build"])

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        published = []
        try:
            for i in range(5):
                write_article(corpus, 70 + i)
                published.append(build_index([corpus], root, FakeEmbedder(), cache=cache).directory.name)
                assert app.state.reloader.check_now()
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert failures == []
        assert client.get("/healthz").json()["build"] == published[-1]
        assert set(published[-1:]) <= builds


class CountedSpeller:
    """Replaces symspellpy.SymSpell: counts spellers made, and is slow to make (as at MedQuAD
    scale, where vocabulary and speller take ~3.5 s of CPU) so that concurrent first queries overlap."""

    made = 0

    def __new__(cls, *args, **kwargs):
        CountedSpeller.made += 1
        time.sleep(0.3)
        return _REAL_SYMSPELL(*args, **kwargs)


_REAL_SYMSPELL = symspellpy.SymSpell


def test_concurrent_first_queries_make_one_speller(live, monkeypatch):
    corpus, root, cache, settings = live
    drug_speller()  # the process's one speller over drug names, made before the count starts
    monkeypatch.setattr(symspellpy, "SymSpell", CountedSpeller)
    CountedSpeller.made = 0
    service = SearchService(load_index(root), FakeEmbedder())
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(service.understanding.correct("causes of ferritinn"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert CountedSpeller.made == 1, "one request makes the speller; the others wait for it instead of making their own"
    assert results == ["causes of ferritin"] * 8


def test_a_swap_makes_the_new_builds_speller_before_serving_it(live, monkeypatch):
    corpus, root, cache, settings = live
    drug_speller()
    monkeypatch.setattr(symspellpy, "SymSpell", CountedSpeller)
    app = make_app(dataclasses.replace(settings, reload_seconds=0))
    with TestClient(app) as client:
        client.get("/api/search", params={"q": "causes of ferritinn"})
        write_article(corpus, 70)
        build_index([corpus], root, FakeEmbedder(), cache=cache)
        CountedSpeller.made = 0
        assert app.state.reloader.check_now()
        assert CountedSpeller.made == 1, "made on the reloader's thread, before the swap"
        body = client.get("/api/search", params={"q": "causes of ferritinn"}).json()
        assert body["searched_for"] == "causes of ferritin" and CountedSpeller.made == 1, "the first request after the swap makes nothing"


def test_reloading_can_be_turned_off(live):
    corpus, root, cache, settings = live
    app = make_app(dataclasses.replace(settings, reload_seconds=0))
    with TestClient(app) as client:
        first = client.get("/healthz").json()["build"]
        write_article(corpus, 80)
        build_index([corpus], root, FakeEmbedder(), cache=cache)
        time.sleep(0.3)
        assert client.get("/healthz").json()["build"] == first and app.state.reloader._thread is None


@pytest.mark.slow  # starts real processes
def test_a_real_server_process_picks_up_a_build_published_by_the_command_line(tmp_path):
    import httpx

    corpus = make_corpus(tmp_path / "corpus", 8)
    root = tmp_path / "index"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), MEDKB_CONVERSATIONS_DB=str(tmp_path / "c.sqlite"),
               MEDKB_RELOAD_SECONDS="0.2")
    fake_cli = [sys.executable, str(TESTS / "fake_model_cli.py")]
    out = subprocess.run([*fake_cli, "index", str(corpus), "--index-dir", str(root)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*fake_cli, "serve", "--index-dir", str(root), "--port", str(port), "--log-level", "info"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the server")
        first = httpx.get(f"{base}/healthz").json()["build"]
        write_article(corpus, 40)
        out = subprocess.run([*fake_cli, "index", str(corpus), "--index-dir", str(root)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "reused from cache   8 of 9 files" in out.stdout
        new = index_store.current_dir(root).name
        assert new != first
        wait_for(lambda: httpx.get(f"{base}/healthz").json()["build"] == new, 30, "the swap")
        results = httpx.get(f"{base}/api/search", params={"q": "what causes topic40", "k": 3}).json()["results"]
        assert results[0]["article_id"] == "topic-040"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert "Traceback" not in output and f"serving build {new}" in output, output


def test_a_swapped_in_build_has_the_features_of_a_fresh_start(live, monkeypatch):
    """`SearchService.over` takes over the previous build's question-type masks for unchanged
    passages and headings only: after an edit that changes what a passage and a heading speak
    of, every feature of every candidate equals that of a service started afresh on the new
    build, and only the changed texts were read again."""
    import numpy as np

    import retrieval.ranker as ranker

    corpus, root, cache, _ = live
    old = SearchService(load_index(root), FakeEmbedder())
    # The edit makes a passage's opening speak of treatment (its section, hence its chunk id,
    # stays) and renames another section's heading to one about prevention.
    path = corpus / "topic-003.md"
    path.write_text(path.read_text().replace("### Evaluation of topic3", "### Preventing topic3", 1)
                    .replace("Topic3 is linked", "Topic3 is treated with rest; it is linked", 1))
    assert any(c.text.startswith("Topic3 is linked") for c in old.index.chunks)
    build_index([corpus], root, FakeEmbedder(), cache=cache)
    calls = []
    real = ranker.type_mask
    monkeypatch.setattr(ranker, "type_mask", lambda text: calls.append(text) or real(text))
    swapped = old.over(load_index(root))
    assert calls and all("topic3" in text.lower() for text in calls), calls
    monkeypatch.setattr(ranker, "type_mask", real)
    fresh = SearchService(load_index(root), FakeEmbedder())
    assert np.array_equal(swapped._features.text_types, fresh._features.text_types)
    assert np.array_equal(swapped._features.heading_types, fresh._features.heading_types)
    for question in ("how is topic3 treated?", "preventing topic3", "what causes topic7?"):
        a, b = swapped.search(question, k=10), fresh.search(question, k=10)
        assert [(h.chunk.id, round(h.score, 9)) for h in a.hits] == [(h.chunk.id, round(h.score, 9)) for h in b.hits]

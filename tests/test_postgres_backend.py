"""The PostgreSQL + pgvector backend against the embedded one on the same build: the same
rankings under every filter, builds published atomically, chunks deleted and upserted with
BM25 statistics kept right, and `medkb index` / `medkb search` with MEDKB_BACKEND=postgres."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.index_store import IndexManifest, load_index
from indexer.lexical import tokenize
from retrieval.backends.embedded import EmbeddedBackend
from retrieval.backends.postgres import PostgresBackend, PostgresStore, load_published, published_build
from retrieval.search import Filters, RetrievalSettings, SearchService

from backend_helpers import publish_to_database
from fakes import FakeEmbedder
from review_helpers import review_book
from sample_articles import MICRO_BODY, TREAT_BODY, article

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

QUERIES = ["causes of chronic microcytic anemia", "iron deficiency treatment", "intravenous iron", "thalassemia trait diagnosis",
           "lead poisoning in children", "ferritin low", "when to transfuse", "sideroblastic anemia", "oral iron side effects", "anemia"]
FILTERS = [Filters(), Filters(review_status=("submitted",)), Filters(review_status=("under_review", "approved")), Filters(evidence_kind=("guideline",)),
           Filters(evidence_kind=("research",)), Filters(audience=("patient",)), Filters(audience=("clinician",)),
           Filters(updated_since=dt.date(2025, 3, 1)), Filters(retracted="exclude"), Filters(evidence_kind=("research",), audience=("clinician",))]


@pytest.fixture
def both(default_corpus_index, fresh_database, tmp_path):
    """(embedded service, postgres service) over the same build, with the same review log."""
    index = load_index(default_corpus_index)
    first = sorted(index.articles)
    reviews = review_book(tmp_path / "reviews.sqlite", index, {first[0]: "start_review", first[1]: "start_review"})
    publish_to_database(default_corpus_index, fresh_database)
    remote = load_published(fresh_database)
    backend = PostgresBackend.for_index(fresh_database, remote)
    yield SearchService(index, FakeEmbedder(), reviews=reviews), SearchService(remote, FakeEmbedder(), reviews=reviews, backend=backend)
    backend.close()


def ranking(result) -> list[tuple[str, float]]:
    return [(h.chunk.id, h.score) for h in result.hits]


def assert_same_ranking(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    """The same passages in the same order, except that passages whose scores differ by less than
    1e-5 (the two engines' float arithmetic) may swap places among themselves."""
    assert len(a) == len(b)
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)
    for i, ((ia, sa), (ib, _)) in enumerate(zip(a, b)):
        if ia != ib:
            tied = {c for c, s in a if abs(s - sa) < 1e-5} | {c for c, s in b if abs(s - sa) < 1e-5}
            assert ia in tied and ib in tied, f"rank {i + 1}: {ia} vs {ib}"


def test_the_build_reads_back_from_the_database_as_written(default_corpus_index, fresh_database):
    publish_to_database(default_corpus_index, fresh_database)
    local, remote = load_index(default_corpus_index), load_published(fresh_database)
    assert [c.to_dict() for c in remote.chunks] == [c.to_dict() for c in local.chunks]
    assert remote.articles == local.articles and remote.sections.ids == local.sections.ids
    assert np.array_equal(remote.sections.vectors, local.sections.vectors)
    assert remote.manifest.corpus == local.manifest.corpus and remote.manifest.counts == local.manifest.counts
    for words in ("iron deficiency anaemia", "ferritin", "nothing-like-this"):
        assert np.array_equal(remote.lexical.scores(words), local.lexical.scores(words))


def test_both_backends_give_the_same_lists_and_scores(default_corpus_index, fresh_database):
    publish_to_database(default_corpus_index, fresh_database)
    local, remote = load_index(default_corpus_index), load_published(fresh_database)
    embedded, postgres = EmbeddedBackend(local), PostgresBackend.for_index(fresh_database, remote)
    embedder = FakeEmbedder()
    try:
        for query in QUERIES:
            tokens, vector = tokenize(query), embedder.encode_queries([query])[0]
            assert_same_ranking([(str(i), s) for i, s in embedded.lexical(tokens, 50)], [(str(i), s) for i, s in postgres.lexical(tokens, 50)])
            assert_same_ranking([(str(i), s) for i, s in embedded.dense(vector, 50)], [(str(i), s) for i, s in postgres.dense(vector, 50)])
            ids = np.arange(0, len(local.chunks), 7)
            assert np.allclose(embedded.lexical_scores(tokens, ids), postgres.lexical_scores(tokens, ids), atol=1e-5)
            assert np.allclose(embedded.dense_scores(vector, ids), postgres.dense_scores(vector, ids), atol=1e-5)
        twice = ["iron", "iron", "anaemia"]  # a repeated query word counts twice in both
        assert np.allclose([s for _, s in embedded.lexical(twice, 5)], [s for _, s in postgres.lexical(twice, 5)], atol=1e-5)
    finally:
        postgres.close()


@pytest.mark.parametrize("retriever", ["dense", "lexical", "hybrid"])
def test_same_results_under_every_filter(both, retriever):
    """Dense and lexical rankings agree but for the order of tied scores (FAISS does not order
    ties by chunk, PostgreSQL does); hybrid fuses ranks, so a tie ordered otherwise moves a
    passage a place: its top 10 must agree in at least 9 passages, and exactly in most searches."""
    embedded, postgres = both
    settings = RetrievalSettings(retriever=retriever)
    nonempty = identical = 0
    for query in QUERIES:
        for filters in FILTERS:
            a, b = embedded.search(query, 10, filters, settings=settings), postgres.search(query, 10, filters, settings=settings)
            if retriever == "hybrid":
                assert len({h.chunk.id for h in a.hits} & {h.chunk.id for h in b.hits}) >= min(len(a.hits), 9)
            else:
                assert_same_ranking(ranking(a), ranking(b))
            identical += [h.chunk.id for h in a.hits] == [h.chunk.id for h in b.hits]
            assert a.no_match == b.no_match
            nonempty += bool(a.hits)
            for hit in b.hits:  # what the filter promises, checked on the database's answer itself
                status = b.reviews[hit.chunk.article_id].status if hit.chunk.article_id in b.reviews else "submitted"
                assert filters.admits(hit.chunk, status)
    assert nonempty > len(QUERIES) * len(FILTERS) // 2, "most filtered searches find something, so the comparison is not of empty lists"
    assert identical >= 0.8 * len(QUERIES) * len(FILTERS)


def test_a_filter_that_keeps_few_chunks_still_fills_the_dense_list(both):
    """HNSW explores ef_search neighbours and the filter drops most of them: the database then
    answers exactly, so the filtered list is as long as the embedded one."""
    embedded, postgres = both
    rare = Filters(evidence_kind=("education",))
    vector = FakeEmbedder().encode_queries(["iron"])[0]
    a = embedded.backend.dense(vector, 100, embedded._admitted(rare, embedded.review_statuses()))
    b = postgres.backend.dense(vector, 100, postgres._admitted(rare, postgres.review_statuses()))
    assert len(a) == len(b) and {i for i, _ in a} == {i for i, _ in b}


def _tiny(tmp_path: Path, extra: bool) -> Path:
    corpus = tmp_path / ("corpus-extra" if extra else "corpus")
    corpus.mkdir()
    (corpus / "microcytosis.md").write_text(article("microcytosis", "What are the causes of chronic microcytosis?", MICRO_BODY))
    (corpus / "iron-treatment.md").write_text(article("iron-treatment", "How is iron deficiency treated?", TREAT_BODY, status="submitted"))
    if extra:
        (corpus / "copper.md").write_text(article("copper", "What does copper deficiency cause?", """
## From the Guidelines
Copper deficiency causes a microcytic anaemia that mimics iron deficiency [1].
Zinc excess is the commonest cause of copper deficiency [1].
""", status="submitted", references="- id: 1\n  kind: guideline\n  title: A guideline\n  source: A society\n  year: 2021\n"))
    root = tmp_path / ("index-extra" if extra else "index")
    build_index([corpus], root, FakeEmbedder())
    return root


def test_deleting_an_article_leaves_what_a_build_without_it_would_search(tmp_path, fresh_database):
    with_copper, without = load_index(_tiny(tmp_path, True)), load_index(_tiny(tmp_path, False))
    with PostgresStore(fresh_database) as store:
        first = store.publish_index(with_copper)
        build = store.stage(with_copper.manifest.model.dim, base=first)
        store.delete_articles(build, ["copper"])
        store.finish(build, with_copper.manifest)
        assert published_build(fresh_database) == first, "a staged build is invisible until published"
        store.publish(build)
    remote = load_published(fresh_database)
    assert published_build(fresh_database) == build and "copper" not in remote.articles
    assert [c.id for c in remote.chunks] == [c.id for c in without.chunks]
    postgres, reference = PostgresBackend.for_index(fresh_database, remote), EmbeddedBackend(without)
    try:
        for query in ("copper deficiency zinc", "iron deficiency microcytic anaemia", "ferritin"):
            tokens = tokenize(query)
            # BM25's statistics (document count, lengths, document frequencies) are those of the smaller corpus
            assert_same_ranking([(str(i), s) for i, s in reference.lexical(tokens, 20)], [(str(i), s) for i, s in postgres.lexical(tokens, 20)])
        assert postgres.lexical(tokenize("zinc"), 5) == []
    finally:
        postgres.close()


def test_an_upserted_chunk_replaces_the_old_one(tmp_path, fresh_database):
    index = load_index(_tiny(tmp_path, False))
    chunk = index.chunks[0]
    changed = type(chunk).from_dict({**chunk.to_dict(), "text": "Hepcidin blocks ferroportin.", "embed_text": "Hepcidin blocks ferroportin."})
    with PostgresStore(fresh_database) as store:
        first = store.publish_index(index)
        build = store.stage(index.manifest.model.dim, base=first)
        store.upsert_chunks(build, [changed], FakeEmbedder().encode_documents([changed.embed_text]))
        store.finish(build, index.manifest)
        store.publish(build)
    remote = load_published(fresh_database)
    backend = PostgresBackend.for_index(fresh_database, remote)
    try:
        assert len(remote.chunks) == len(index.chunks) and sum(c.id == chunk.id for c in remote.chunks) == 1
        (hit,) = backend.lexical(tokenize("hepcidin ferroportin"), 5)
        assert remote.chunks[hit[0]].text == "Hepcidin blocks ferroportin."
    finally:
        backend.close()


def test_a_failed_build_leaves_the_published_one_and_no_staging(tmp_path, fresh_database):
    index = load_index(_tiny(tmp_path, False))
    with PostgresStore(fresh_database) as store:
        first = store.publish_index(index)
        broken = type(index)(**{**index.__dict__, "chunks": index.chunks + index.chunks[:1]})  # one chunk more than vectors
        with pytest.raises(ValueError, match="chunks but"):
            store.publish_index(broken)
        builds = store.conn.execute("SELECT id, state FROM medkb_builds").fetchall()
        store.conn.rollback()
    assert published_build(fresh_database) == first and builds == [(first, "ready")]


def test_readers_see_the_old_build_or_the_new_one_never_a_mix(tmp_path, fresh_database):
    small, large = load_index(_tiny(tmp_path, False)), load_index(_tiny(tmp_path, True))
    import psycopg

    with PostgresStore(fresh_database) as store:
        store.publish_index(small)
    stop, seen, problems = threading.Event(), set(), []

    def read() -> None:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            while not stop.is_set():
                # what a replica does: read the pointer, then read that build
                build = conn.execute("SELECT build_id FROM medkb_published").fetchone()[0]
                state, manifest = conn.execute("SELECT state, manifest FROM medkb_builds WHERE id = %s", (build,)).fetchone()
                rows = conn.execute(f'SELECT count(*), count(DISTINCT article_id) FROM "medkb_b_{build}".chunks').fetchone()
                counts = IndexManifest.from_dict(manifest).counts
                if state != "ready" or rows != (counts.chunks, counts.articles):
                    problems.append((build, state, rows, counts))
                seen.add(rows)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with PostgresStore(fresh_database, keep=5) as store:
            for i in range(6):
                store.publish_index(large if i % 2 == 0 else small)
    finally:
        stop.set()
        reader.join(30)
    assert not problems
    assert seen <= {(len(small.chunks), 2), (len(large.chunks), 3)} and len(seen) == 2, "the reader saw both builds, each whole"


def test_index_and_search_commands_publish_into_and_read_from_the_database(tmp_path, fresh_database):
    corpus = tmp_path / "corpus"
    shutil.copytree(REPO / "corpus", corpus)
    env = {**os.environ, "MEDKB_BACKEND": "postgres", "MEDKB_DATABASE_URL": fresh_database, "MEDKB_INDEX_DIR": str(tmp_path / "index"),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    cli = [sys.executable, str(TESTS / "fake_model_cli.py")]
    out = subprocess.run([*cli, "index", str(corpus)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "into the database" in out.stdout
    first = published_build(fresh_database)
    again = subprocess.run([*cli, "index", str(corpus)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "already serves this build" in again.stdout and published_build(fresh_database) == first
    # the index root is gone: search still answers, from the database
    shutil.rmtree(tmp_path / "index")
    found = subprocess.run([*cli, "search", "causes of microcytosis", "-k", "3"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert found.returncode == 0, found.stderr
    assert " 1. " in found.stdout
    missing = subprocess.run([*cli, "search", "anaemia"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                             env={**env, "MEDKB_DATABASE_URL": ""})
    assert missing.returncode == 2 and "MEDKB_DATABASE_URL" in missing.stderr


def _database_service(settings) -> SearchService:
    """A server's search service on the database's published build, with the fake model."""
    index = load_published(settings.database_url)
    return SearchService(index, FakeEmbedder(), backend=PostgresBackend.for_index(settings.database_url, index))


def test_a_server_on_the_database_swaps_to_each_newly_published_build(tmp_path, fresh_database):
    from fastapi.testclient import TestClient

    from medkb.settings import Settings
    from server.app import create_app

    small, large = load_index(_tiny(tmp_path, False)), load_index(_tiny(tmp_path, True))
    with PostgresStore(fresh_database) as store:
        first = store.publish_index(small)
    settings = Settings(index_dir=tmp_path / "unused", backend="postgres", database_url=fresh_database, reload_seconds=0.05,
                        conversations_db=tmp_path / "conversations.sqlite")

    with TestClient(create_app(settings, service_factory=_database_service)) as client:
        assert client.get("/healthz").json()["build"] == first
        assert not any(p["article_id"] == "copper" for p in client.get("/api/search", params={"q": "copper deficiency zinc"}).json()["results"])
        with PostgresStore(fresh_database) as store:
            second = store.publish_index(large)
        deadline = time.time() + 20
        while client.get("/healthz").json()["build"] != second:
            assert time.time() < deadline, "the server did not swap to the newly published build"
            time.sleep(0.05)
        results = client.get("/api/search", params={"q": "copper deficiency zinc"}).json()["results"]
        assert results and results[0]["article_id"] == "copper"


def test_a_published_build_missing_from_the_database_is_refused_naming_it_once(tmp_path, fresh_database, caplog):
    """A server on the database whose newly published build is not there (dropped, or never
    finished) keeps serving and says so naming that build once; the line named it twice
    ("... build B, still serving A: build B is not in the database ...")."""
    import logging

    import psycopg
    from fastapi.testclient import TestClient

    from medkb.settings import Settings
    from server.app import create_app

    small, large = load_index(_tiny(tmp_path, False)), load_index(_tiny(tmp_path, True))
    with PostgresStore(fresh_database) as store:
        first = store.publish_index(small)
    settings = Settings(index_dir=tmp_path / "unused", backend="postgres", database_url=fresh_database, reload_seconds=0,
                        conversations_db=tmp_path / "conversations.sqlite")

    caplog.set_level(logging.WARNING, logger="medkb.server")
    app = create_app(settings, service_factory=_database_service)
    with TestClient(app) as client:
        with PostgresStore(fresh_database) as store:
            second = store.publish_index(large)
        with psycopg.connect(fresh_database, autocommit=True) as conn:  # set by hand: the build is no longer a finished one
            conn.execute("UPDATE medkb_builds SET state = 'staging' WHERE id = %s", (second,))
        assert app.state.reloader.check_now() is False
        assert client.get("/healthz").json()["build"] == first
    lines = [r.getMessage() for r in caplog.records if r.name == "medkb.server" and r.levelno == logging.WARNING]
    assert len(lines) == 1 and lines[0].startswith(f"not serving newly published build {second}, still serving {first}: it is not in the database "), lines
    assert lines[0].count(second) == 1 and lines[0].endswith("(dropped, or never finished)."), lines


def test_old_builds_are_dropped_once_no_replica_can_still_serve_them(tmp_path, fresh_database, monkeypatch):
    import retrieval.backends.postgres as pg

    index = load_index(_tiny(tmp_path, False))
    with PostgresStore(fresh_database, keep=2) as store:
        ids = [store.publish_index(index) for _ in range(3)]
        assert len(store.conn.execute("SELECT id FROM medkb_builds").fetchall()) == 3, "all published within the grace period: kept"
        monkeypatch.setattr(pg, "GRACE_SECONDS", 0)
        ids.append(store.publish_index(index))
        kept = sorted(r[0] for r in store.conn.execute("SELECT id FROM medkb_builds"))
        schemas = sorted(r[0] for r in store.conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'medkb_b_%'"))
    assert kept == sorted(ids[-2:]) and schemas == [f"medkb_b_{i}" for i in kept]
    assert published_build(fresh_database) == ids[-1]


def test_a_server_rides_out_dropped_connections_and_answers_503_while_the_database_is_away(tmp_path, fresh_database):
    """Connections the database drops are replaced before a search uses them; while it accepts no
    connections, searches get the JSON error shape with 503 and Retry-After within seconds (not a
    500 after the pool's default 30 s); once it is back, searches work again."""
    import psycopg
    from fastapi.testclient import TestClient

    from medkb.settings import Settings
    from server.app import create_app

    with PostgresStore(fresh_database) as store:
        store.publish_index(load_index(_tiny(tmp_path, False)))
    settings = Settings(index_dir=tmp_path / "unused", backend="postgres", database_url=fresh_database, reload_seconds=0,
                        conversations_db=tmp_path / "conversations.sqlite")

    from urllib.parse import urlsplit

    from pg_server import _with_database

    name = urlsplit(fresh_database).path.lstrip("/")
    admin = _with_database(fresh_database, "postgres")

    def end_sessions() -> None:
        """End every session on the database, and wait until they are gone (ending is asynchronous)."""
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            deadline = time.monotonic() + 10
            while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]:
                assert time.monotonic() < deadline, "sessions did not end"
                time.sleep(0.05)

    with TestClient(create_app(settings, service_factory=_database_service)) as client:
        query = {"q": "iron deficiency"}
        assert client.get("/api/search", params=query).status_code == 200
        end_sessions()
        assert client.get("/api/search", params=query).status_code == 200, "a dropped connection is replaced, not used"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            end_sessions()
            started = time.monotonic()
            r = client.get("/api/search", params=query)
            waited = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "unavailable" and r.headers["retry-after"] == "5"
            assert "Traceback" not in r.text and waited < 15, waited
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + 20
        while client.get("/api/search", params=query).status_code != 200:
            assert time.monotonic() < deadline, "searches did not recover once the database was back"
            time.sleep(0.2)


def _medkb(command: str | list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a `medkb` command line (the fake model in place of the packaged one): a list of
    arguments, or a command as a refusal advises it (`VAR=value ... medkb index corpus`)."""
    words = command.split() if isinstance(command, str) else command
    assigned = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-") and words.index(w) < words.index("medkb"))
    argv = words[words.index("medkb") + 1:] if "medkb" in words else words
    return subprocess.run([sys.executable, str(TESTS / "fake_model_cli.py"), *argv], capture_output=True, text=True, cwd=cwd,
                          env={**env, **assigned}, timeout=300)


def _advice(refusal: str) -> str:
    """The command a refusal says to run ("Rebuild it with `...`")."""
    import re

    found = re.search(r"Rebuild it with `([^`]+)`", refusal)
    assert found, refusal
    return found.group(1)


def _healthz_of_serve(env: dict[str, str], cwd: Path, log: Path) -> dict:
    """Start `medkb serve` (fake model) on a free port, return its /healthz once it answers, stop it."""
    import httpx

    from live_server import serve_medkb

    with serve_medkb(env, log, cwd=cwd) as base:
        return httpx.get(f"{base}/healthz", timeout=5).json()


def test_a_build_by_another_encoder_is_published_and_the_refusal_s_advice_fixes_it(tiny_corpus, tmp_path, fresh_database):
    """After MEDKB_ENCODER changes, `medkb serve` and `medkb search` refuse the database's build
    and say what to run. `medkb index --if-stale` (what `make serve` runs) and the refusal's own
    command rebuilt the index under the index root, but the database kept the old build: "the
    database already serves this build", because only the corpus fingerprint (which names the
    model's weights, not how they run) and the chunk count were compared. Now the build is
    published whenever its model (encoder, precision, recipe included), chunker, lexical index
    or data differ from the database's, and the refusal goes away."""
    from retrieval.backends.postgres import published_manifest

    env = {**os.environ, "MEDKB_BACKEND": "postgres", "MEDKB_DATABASE_URL": fresh_database, "MEDKB_INDEX_DIR": str(tmp_path / "var" / "index"),
           "MEDKB_RELOAD_SECONDS": "0", "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    assert tiny_corpus == tmp_path / "corpus"  # so that the default corpus (./corpus), which a refusal's `medkb index --if-stale` indexes, is this one, run from tmp_path

    def served() -> tuple[str | None, str]:
        model = IndexManifest.from_dict(published_manifest(fresh_database)).model
        return published_build(fresh_database), model.setting

    first = _medkb(["index", "corpus"], {**env, "MEDKB_ENCODER": "torch"}, tmp_path)
    assert first.returncode == 0 and "into the database" in first.stdout, first.stderr
    torch_build = published_build(fresh_database)
    assert served() == (torch_build, "torch")

    # Another encoder: refused, until `medkb index --if-stale` publishes its build.
    int8 = {**env, "MEDKB_ENCODER": "onnx-int8"}
    for command in (["search", "iron"], ["serve", "--port", "1"]):
        refused = _medkb(command, int8, tmp_path)
        assert refused.returncode == 2 and "built with the torch encoder, but queries would be encoded with onnx-int8" in refused.stderr, refused
        assert _advice(refused.stderr) == "MEDKB_ENCODER=onnx-int8 medkb index --if-stale", refused.stderr
    rebuilt = _medkb(["index", "--if-stale", "corpus"], int8, tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "already serves" not in rebuilt.stdout and "into the database" in rebuilt.stdout, rebuilt.stdout
    int8_build = published_build(fresh_database)
    assert int8_build != torch_build and served() == (int8_build, "onnx-int8")
    found = _medkb(["search", "iron deficiency", "-k", "3"], int8, tmp_path)
    assert found.returncode == 0 and " 1. " in found.stdout, found.stderr
    again = _medkb(["index", "--if-stale", "corpus"], int8, tmp_path)
    assert again.returncode == 0 and "already serves this build" in again.stdout and served() == (int8_build, "onnx-int8"), again.stdout

    # And another: the command the refusal names fixes it, and `medkb serve` then serves the new build.
    fp32 = {**env, "MEDKB_ENCODER": "onnx-fp32"}
    refused = _medkb(["serve", "--port", "1"], fp32, tmp_path)
    assert refused.returncode == 2 and "built with the onnx-int8 encoder" in refused.stderr, refused
    advised = _medkb(_advice(refused.stderr), env, tmp_path)
    assert advised.returncode == 0 and "into the database" in advised.stdout, (advised.stdout, advised.stderr)
    fp32_build = published_build(fresh_database)
    assert fp32_build not in (torch_build, int8_build) and served() == (fp32_build, "onnx-fp32")
    health = _healthz_of_serve(fp32, tmp_path, tmp_path / "serve.log")
    assert health["build"] == fp32_build, health
    assert _medkb(["search", "iron"], fp32, tmp_path).returncode == 0

    # The index root already holds the new encoder's build (as a run before this fix left it): --if-stale publishes it.
    local = _medkb(["index", "corpus"], {**env, "MEDKB_BACKEND": "embedded", "MEDKB_ENCODER": "torch"}, tmp_path)
    assert local.returncode == 0 and "database" not in local.stdout and served() == (fp32_build, "onnx-fp32"), local.stderr
    torch = {**env, "MEDKB_ENCODER": "torch"}
    catch_up = _medkb(["index", "--if-stale", "corpus"], torch, tmp_path)
    assert catch_up.returncode == 0 and "up to date" in catch_up.stdout and "into the database" in catch_up.stdout, catch_up.stdout
    assert served()[1] == "torch" and _medkb(["search", "iron"], torch, tmp_path).returncode == 0


def test_a_build_by_another_export_recipe_is_published(tiny_corpus, tmp_path, fresh_database):
    """The same encoder and precision, quantized by another recipe (this medkb exports otherwise
    now), gives other vectors: the database takes the new build, and keeps it when nothing changed."""
    from indexer.embedding import ModelInfo
    from retrieval.backends.postgres import publish_if_changed

    from fakes import fake_for_encoder

    old, new = fake_for_encoder("onnx-int8"), fake_for_encoder("onnx-int8")
    old.recipe = "int8/1"
    assert new.recipe != old.recipe
    build_index([tiny_corpus], tmp_path / "old", old)
    build_index([tiny_corpus], tmp_path / "new", new)
    first, published = publish_if_changed(fresh_database, load_index(tmp_path / "old"))
    assert published
    second, published = publish_if_changed(fresh_database, load_index(tmp_path / "new"))
    assert published and second != first and published_build(fresh_database) == second
    load_published(fresh_database, ModelInfo.of(new))  # not refused
    assert publish_if_changed(fresh_database, load_index(tmp_path / "new")) == (second, False)

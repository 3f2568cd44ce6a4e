"""The build cache and incremental builds: hits and misses, restarts, bounds, damage, a killed
build, and the one promise that matters most: an incremental build is the same index as a
clean full build of the same corpus (chunks, vectors, BM25 scores, byte for byte)."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from indexer import index_store
from indexer.build import BuildFailed, build_index
from indexer.build_cache import BuildCache, MemoryCache, model_key, open_cache
from indexer.embedding import ModelInfo
from indexer.index_store import load_index
from indexer.lexical import EMPTY, LexicalIndex, tokenize

from fakes import FakeEmbedder
from live_corpus import make_corpus, write_article

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))


class Counting(FakeEmbedder):
    """The fake embedder, counting the texts it embeds and the texts it tokenises."""

    def __init__(self, dim: int = 256):
        super().__init__(dim)
        self.embedded: list[str] = []
        self.tokenised = 0

    def count_tokens(self, texts):
        self.tokenised += len(texts)
        return super().count_tokens(texts)

    def encode_documents(self, texts, batch_size=32, progress=None):
        self.embedded.extend(texts)
        return super().encode_documents(texts, batch_size, progress)


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus", 30)


def build(corpus, root, embedder, cache=None, **kwargs):
    return build_index([corpus], root, embedder, cache=cache, **kwargs)


# ---------------------------------------------------------------- hits and misses


def test_a_second_build_parses_and_embeds_nothing(corpus, tmp_path):
    cache = BuildCache(tmp_path / "cache")
    first = build(corpus, tmp_path / "index", Counting(), cache)
    assert first.parsed == 30 and first.embedded == first.chunks + first.manifest.counts.sections
    assert cache.stats.vector_misses == first.embedded and cache.stats.article_misses == 30

    again = Counting()
    second = build(corpus, tmp_path / "index", again, cache)
    assert second.parsed == 0 and second.embedded == 0
    assert again.embedded == [] and again.tokenised == 0, "nothing is chunked or embedded again"
    assert cache.stats.article_hits == 30 and cache.stats.vector_hits == first.embedded and cache.stats.vector_misses == 0
    assert second.directory != first.directory and second.chunks == first.chunks


def test_an_edit_embeds_only_the_new_text(corpus, tmp_path):
    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "index", Counting(), cache)
    write_article(corpus, 7, extra="A newly added sentence about pernicious anaemia [2].")
    embedder = Counting()
    report = build(corpus, tmp_path / "index", embedder, cache)
    assert report.parsed == 1
    assert embedder.embedded and all("topic7" in t for t in embedder.embedded), "only the edited article's changed passages"
    assert any("pernicious" in t for t in embedder.embedded)
    assert report.embedded == len(embedder.embedded) < 5


def test_the_cache_survives_a_restart(corpus, tmp_path):
    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "index", Counting(), cache)
    cache.close()
    reopened = BuildCache(tmp_path / "cache")
    embedder = Counting()
    report = build(corpus, tmp_path / "index", embedder, reopened)
    assert report.parsed == 0 and report.embedded == 0 and embedder.embedded == []


def test_another_model_misses(corpus, tmp_path):
    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "index", Counting(), cache)

    class Retrained(Counting):
        checksum = "another-weights-checksum"

    class Quantised(Counting):
        precision = "int8"

    assert len({model_key(Counting()), model_key(Retrained()), model_key(Quantised()), model_key(Counting(dim=128))}) == 4
    other = Retrained()
    report = build(corpus, tmp_path / "other-index", other, cache)
    assert report.parsed == 30, "the chunker counts the model's word pieces: another model, another chunking"
    assert len(set(other.embedded)) == report.embedded == report.chunks + report.manifest.counts.sections


def test_the_cache_is_bounded_least_recently_used_first(tmp_path):
    a = make_corpus(tmp_path / "a", 20)
    b = tmp_path / "b"
    b.mkdir()
    for i in range(100, 120):
        write_article(b, i)
    cache = BuildCache(tmp_path / "cache")
    build(a, tmp_path / "ia", Counting(), cache)
    one_corpus = cache.size_bytes()
    build(b, tmp_path / "ib", Counting(), cache)
    assert cache.size_bytes() > 1.5 * one_corpus
    cache.max_bytes = int(1.2 * one_corpus)
    build(b, tmp_path / "ib", Counting(), cache)  # b is the most recently used: a goes
    assert cache.size_bytes() <= cache.max_bytes and cache.stats.evicted > 0
    embedder = Counting()
    assert build(b, tmp_path / "ib", embedder, cache).embedded == 0, "what the last build used is kept"
    assert build(a, tmp_path / "ia", embedder, cache).parsed > 5, "the least recently used corpus was evicted"


def test_a_damaged_entry_is_a_miss_never_a_wrong_vector(corpus, tmp_path):
    cache = BuildCache(tmp_path / "cache")
    first = build(corpus, tmp_path / "index", Counting(), cache)
    cache.close()
    snapshot = tmp_path / "cache" / "last-build-vectors.npz"
    # a damaged snapshot (the last build's vectors in one file) is ignored: the database answers
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    cache = BuildCache(tmp_path / "cache")
    report = build(corpus, tmp_path / "index", Counting(), cache)
    assert cache.stats.snapshot_hits == 0 and report.embedded == 0 and cache.stats.vector_hits == report.chunks + report.manifest.counts.sections
    cache.close()
    # damaged rows in the database are misses, dropped
    snapshot.unlink()
    with sqlite3.connect(tmp_path / "cache" / "build-cache.sqlite") as db:
        db.execute("UPDATE vectors SET vector = zeroblob(length(vector)) WHERE text_sha256 IN (SELECT text_sha256 FROM vectors LIMIT 3)")
        db.execute("UPDATE articles SET value = substr(value, 1, 10) WHERE key IN (SELECT key FROM articles LIMIT 2)")
    cache = BuildCache(tmp_path / "cache")
    embedder = Counting()
    report = build(corpus, tmp_path / "index", embedder, cache)
    assert cache.stats.damaged == 5 and report.parsed == 2 and report.embedded == 3
    assert report_vectors(report.directory).tolist() == report_vectors(first.directory).tolist()


def report_vectors(directory: Path) -> np.ndarray:
    import faiss

    index = faiss.read_index(str(directory / "vectors.faiss"))
    return index.reconstruct_n(0, index.ntotal)


# ---------------------------------------------------------------- incremental == full


def index_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_an_incremental_build_is_the_clean_full_build(corpus, tmp_path):
    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "incremental", Counting(), cache)
    # edit one, add one, delete one, break one, and add a duplicate id: every path of the corpus loader
    write_article(corpus, 3, extra="Edited: low ferritin also points to coeliac disease [1].")
    write_article(corpus, 30)
    (corpus / "topic-011.md").unlink()
    (corpus / "topic-012.md").write_text((corpus / "topic-012.md").read_text().replace("review_status: under_review", "review_status: maybe"))
    (corpus / "zz-duplicate.md").write_text((corpus / "topic-013.md").read_text())
    incremental = build(corpus, tmp_path / "incremental", Counting(), cache)
    assert incremental.parsed == 4  # edited, added, broken, duplicate
    full = build(corpus, tmp_path / "full", Counting(), BuildCache(tmp_path / "fresh-cache"))
    no_cache = build(corpus, tmp_path / "none", Counting())
    assert full.parsed == no_cache.parsed == 31

    a, b, c = (load_index(r) for r in (tmp_path / "incremental", tmp_path / "full", tmp_path / "none"))
    assert [ch.id for ch in a.chunks] == [ch.id for ch in b.chunks] and a.chunks == b.chunks == c.chunks
    assert np.array_equal(report_vectors(a.directory), report_vectors(b.directory))
    assert np.array_equal(a.sections.vectors, b.sections.vectors) and a.sections.ids == b.sections.ids
    assert index_files(a.directory) == index_files(b.directory) == index_files(c.directory), "every data file, byte for byte"
    for query in ("ferritin coeliac", "topic3", "causes of topic29", "warfarin heparin", "nothing-known"):
        assert np.array_equal(a.lexical.scores(query), b.lexical.scores(query))
    ma, mb = a.manifest, b.manifest
    assert (ma.counts, ma.corpus, ma.skipped, ma.lexical) == (mb.counts, mb.corpus, mb.skipped, mb.lexical)
    assert {"topic-012.md", "zz-duplicate.md"} == {Path(p.file).name for p in ma.skipped}
    assert "topic-011" not in a.articles and "topic-030" in a.articles


def test_the_build_is_what_the_corpus_loader_and_chunker_make(corpus, tmp_path):
    """The cached path writes exactly the chunks and records that parsing from scratch makes."""
    from indexer.articles import load_corpus
    from indexer.chunking import chunk_article

    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "index", Counting(), cache)
    build(corpus, tmp_path / "index", Counting(), cache)  # every entry from the cache
    loaded = load_index(tmp_path / "index")
    expected = [c for a in load_corpus([corpus]).articles for c in chunk_article(a, FakeEmbedder().count_tokens)]
    assert loaded.chunks == expected
    fake = FakeEmbedder()
    assert np.array_equal(report_vectors(loaded.directory), fake.encode_documents([c.embed_text for c in expected]))


def test_bm25_from_term_counts_scores_exactly_as_bm25s(corpus):
    import bm25s

    from indexer.articles import load_corpus
    from indexer.chunking import chunk_article

    texts = [c.embed_text for a in load_corpus([corpus]).articles for c in chunk_article(a, FakeEmbedder().count_tokens)] + ["", "the of and"]
    ours = LexicalIndex.build(texts)
    reference = bm25s.BM25(k1=1.2, b=0.75)
    reference.index([tokenize(t) or [EMPTY] for t in texts], show_progress=False)
    words = sorted({w for t in texts for w in tokenize(t)})
    rng = random.Random(0)
    for _ in range(200):
        query = rng.sample(words, rng.randint(1, 4))
        assert np.array_equal(ours._bm25.get_scores(query), reference.get_scores(query)), query
    assert set(ours._bm25.vocab_dict) == set(reference.vocab_dict)


def test_a_deleted_article_disappears_from_search(corpus, tmp_path):
    from retrieval.search import SearchService

    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "index", Counting(), cache)
    service = SearchService(load_index(tmp_path / "index"), FakeEmbedder())
    assert any(h.chunk.article_id == "topic-005" for h in service.search("what causes topic5", 5).hits)
    (corpus / "topic-005.md").unlink()
    report = build(corpus, tmp_path / "index", Counting(), cache)
    assert [(lost.article_id, lost.reason) for lost in report.lost] == [("topic-005", "deleted")]
    service = SearchService(load_index(tmp_path / "index"), FakeEmbedder())
    for retriever in ("dense", "lexical", "hybrid"):
        from retrieval.search import RetrievalSettings

        hits = service.search("what causes topic5", 10, settings=RetrievalSettings(retriever=retriever)).hits
        assert hits and all(h.chunk.article_id != "topic-005" for h in hits)
    assert service.article("topic-005") is None


def test_lost_articles_are_named_and_a_build_can_be_withheld(corpus, tmp_path):
    root = tmp_path / "index"
    first = build(corpus, root, Counting()).directory
    (corpus / "topic-001.md").unlink()
    (corpus / "topic-002.md").write_text("---\nid: topic-002\n---\nno title\n")
    (corpus / "topic-003.md").write_text((corpus / "topic-003.md").read_text().replace("id: topic-003", "id: topic-three"))
    told = []
    with pytest.raises(BuildFailed, match="would be lost"):
        build(corpus, root, Counting(), on_loss=lambda lost: told.extend(lost) or False)
    assert sorted((lost.article_id, lost.reason) for lost in told) == [("topic-001", "deleted"), ("topic-002", "has errors"), ("topic-003", "id changed")]
    assert all(lost.path.endswith(f"{lost.article_id.replace('three', '003')}.md") for lost in told)
    assert index_store.current_dir(root) == first, "a withheld build publishes nothing"
    report = build(corpus, root, Counting(), on_loss=lambda lost: True)
    assert len(report.lost) == 3 and index_store.current_dir(root) == report.directory


# ---------------------------------------------------------------- a killed build


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fakes import FakeEmbedder
    from indexer.build import build_index
    from indexer.build_cache import BuildCache

    corpus, root, cache_dir, marker = map(Path, sys.argv[1:5])

    class DiesMidway(FakeEmbedder):
        done = 0
        def encode_documents(self, texts, batch_size=32, progress=None):
            if self.done:  # the first call's texts are committed; die while embedding the rest
                marker.write_text(str(self.done))
                time.sleep(60)
            self.done += len(texts)
            return super().encode_documents(texts, batch_size, progress)

    build_index([corpus], root, DiesMidway(), cache=BuildCache(cache_dir))
""")


def test_a_build_killed_midway_leaves_the_cache_readable_and_the_old_build_serving(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", 150)
    root, cache_dir = tmp_path / "index", tmp_path / "cache"
    first = build(corpus, root, Counting(), BuildCache(tmp_path / "other-cache")).directory  # published; this cache stays empty
    for i in range(150):
        write_article(corpus, i, extra=f"Revised {i}.")  # every chunk text changes: all must be embedded
    marker = tmp_path / "embedding"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(corpus), str(root), str(cache_dir), str(marker)], env=ENV, cwd=REPO)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert proc.poll() is None, "the build died before embedding"
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert index_store.current_dir(root) == first and load_index(root).directory == first, "the old build still serves"
    cache = BuildCache(cache_dir)
    assert cache.check() == "ok"
    committed = int(marker.read_text())
    vectors, articles = cache.counts()
    assert vectors == committed and articles == 150, "what was committed before the kill is whole; nothing else is there"
    embedder = Counting()
    report = build(corpus, root, embedder, cache)
    assert report.parsed == 0 and report.embedded == report.chunks + report.manifest.counts.sections - committed
    assert len(set(embedder.embedded)) == report.embedded
    assert load_index(root).directory == report.directory != first


def test_no_cache_and_a_zero_size_cache_build_in_memory(tmp_path):
    assert isinstance(open_cache(None), MemoryCache) and isinstance(open_cache(tmp_path, 0), MemoryCache)
    assert isinstance(open_cache(tmp_path, 1), BuildCache)


def test_model_key_is_the_whole_identity():
    info = ModelInfo.of(FakeEmbedder())
    assert info.checksum in FakeEmbedder.checksum and len(model_key(FakeEmbedder())) == 64


def test_unchanged_files_are_not_read_again_and_a_restored_mtime_does_not_fool_it(corpus, tmp_path, monkeypatch):
    import indexer.build_cache as build_cache

    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "index", Counting(), cache)
    assert cache.stats.files_hashed == 30
    build(corpus, tmp_path / "index", Counting(), cache)
    assert cache.stats.files_hashed == 30, "files hashed within RACY_NS of being written are hashed again"
    monkeypatch.setattr(build_cache, "RACY_NS", -10**12)  # as if every file had been hashed long after it was written
    build(corpus, tmp_path / "index", Counting(), cache)
    assert cache.stats.files_hashed == 0
    path = corpus / "topic-009.md"
    st = path.stat()
    path.write_text(path.read_text().replace("adults", "elders"))  # the same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime: only ctime tells
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    report = build(corpus, tmp_path / "index", Counting(), cache)
    assert cache.stats.files_hashed == 1 and report.parsed == 1
    assert "elders" in (report.directory / "chunks.jsonl").read_text()


def test_an_unchanged_corpus_or_a_deletion_never_loads_the_model(corpus, tmp_path, monkeypatch):
    import indexer.embedding as embedding
    from indexer.lazy_embedder import LazyEmbedder

    monkeypatch.setattr(embedding, "model_identity", lambda model_dir=None, encoder=None: ModelInfo.of(FakeEmbedder()))
    cache = BuildCache(tmp_path / "cache")
    first = LazyEmbedder(load=FakeEmbedder)
    build(corpus, tmp_path / "index", first, cache)
    assert first.loaded, "a first build parses and embeds"
    again = LazyEmbedder(load=FakeEmbedder)
    build(corpus, tmp_path / "index", again, cache)
    (corpus / "topic-002.md").unlink()
    report = build(corpus, tmp_path / "index", again, cache)
    assert not again.loaded and report.lost[0].article_id == "topic-002"
    write_article(corpus, 2, extra="Back again [1].")
    build(corpus, tmp_path / "index", again, cache)
    assert again.loaded, "an edit needs the model"

    class Other(FakeEmbedder):
        checksum = "not-the-folder's"

    with pytest.raises(RuntimeError, match="not the one its folder describes"):
        LazyEmbedder(load=Other).model()


def test_an_edit_that_brings_no_new_text_is_chunked_without_the_model(corpus, tmp_path, monkeypatch):
    """Chunking needs word-piece counts only (the tokenizer, not torch): a front-matter edit
    publishes the new article without loading the model."""
    import indexer.embedding as embedding
    from indexer.lazy_embedder import LazyEmbedder

    monkeypatch.setattr(embedding, "model_identity", lambda model_dir=None, encoder=None: ModelInfo.of(FakeEmbedder()))
    cache = BuildCache(tmp_path / "cache")
    build(corpus, tmp_path / "index", FakeEmbedder(), cache)
    path = corpus / "topic-005.md"
    original = path.read_text()
    path.write_text(original.replace("last_updated: 2025-04-05", "last_updated: 2026-01-31"))
    counter = Counting()
    lazy = LazyEmbedder(load=FakeEmbedder, count_tokens=counter.count_tokens)
    report = build(corpus, tmp_path / "index", lazy, cache)
    assert report.parsed == 1 and counter.tokenised > 0 and report.embedded == 0
    assert not lazy.loaded, "no text was new: the model is not needed"
    assert str(load_index(tmp_path / "index").articles["topic-005"].last_updated) == "2026-01-31"

    write_article(corpus, 5, extra="A sentence no build has seen [1].")
    build(corpus, tmp_path / "index", lazy, cache)
    assert lazy.loaded, "a new text is embedded, so the model loads"
    path.write_text(original)  # the edits undone: the original's entry and texts are all in the cache
    undone = LazyEmbedder(load=FakeEmbedder, count_tokens=counter.count_tokens)
    report = build(corpus, tmp_path / "index", undone, cache)
    assert report.parsed == 0 and report.embedded == 0 and not undone.loaded


@pytest.mark.model
def test_the_tokenizer_alone_counts_word_pieces_exactly_as_the_model_does():
    """`medkb index` chunks with `load_token_counter` (no torch); `medkb eval` and older builds with
    the model's own tokenizer: the counts must be the same, or chunks would differ between them."""
    from indexer.articles import load_corpus
    from indexer.chunking import chunk_article
    from indexer.embedding import load_embedder, load_token_counter

    model, counter = load_embedder(), load_token_counter()
    articles = load_corpus([REPO / "corpus"]).articles
    texts = [c.embed_text for a in articles for c in chunk_article(a, model.count_tokens)]
    texts += [part for t in texts for part in t.split(". ")]
    texts += ["x" * 600, "", " ", "naïve café 漢字\u200b\tend", "A\u00a0B", "ﬁnal ligature", "🙂 emoji", "Ferritin < 30 µg/L [1, 3]."]
    assert len(texts) > 500
    assert counter(texts) == model.count_tokens(texts)


def test_a_model_folder_without_tokenizer_json_is_counted_by_the_model(tmp_path, monkeypatch):
    import indexer.embedding as embedding
    from indexer.lazy_embedder import LazyEmbedder

    monkeypatch.setattr(embedding, "model_identity", lambda model_dir=None, encoder=None: ModelInfo.of(FakeEmbedder()))
    monkeypatch.setattr(embedding, "load_embedder", lambda model_dir=None, encoder=None, **options: FakeEmbedder())
    lazy = LazyEmbedder(tmp_path)  # an empty folder: no tokenizer.json
    assert lazy.count_tokens(["iron deficiency anaemia"]) == FakeEmbedder().count_tokens(["iron deficiency anaemia"])
    assert lazy.loaded

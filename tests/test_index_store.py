"""Build, publish and load: round trip, atomic publish under failure and kill, model mismatch."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from indexer import index_store
from indexer.articles import load_corpus
from indexer.build import BuildFailed, build_index, is_up_to_date
from indexer.chunking import ChunkerSettings, chunk_article
from indexer.embedding import ModelInfo
from indexer.index_store import IndexCorrupt, IndexMismatch, IndexMissing, load_index

from fakes import FakeEmbedder

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_round_trip(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    report = build_index([tiny_corpus], root, fake_embedder)
    assert report.articles == 2 and report.chunks > 0 and report.skipped == []
    loaded = load_index(root, ModelInfo.of(fake_embedder))
    assert loaded.directory == report.directory
    # what comes back is exactly what the chunker made from the corpus, typed fields included
    expected = [c for a in load_corpus([tiny_corpus]).articles for c in chunk_article(a, fake_embedder.count_tokens)]
    assert loaded.chunks == expected and len(expected) == report.chunks
    assert loaded.faiss_index.ntotal == report.chunks == loaded.manifest.counts.chunks
    m = loaded.manifest
    assert m.model == ModelInfo(fake_embedder.name, fake_embedder.checksum, 256, True, 256, "inner_product")
    assert m.chunker == ChunkerSettings().to_dict()
    assert (m.lexical.library, m.lexical.k1, m.lexical.b) == ("bm25s", 1.2, 0.75)
    assert m.counts.articles == 2 and m.counts.citations_resolved == report.citations_resolved > 0
    assert len(m.corpus.fingerprint) == 64 and m.medkb_version and m.build.finished_at
    assert loaded.articles["microcytosis"].references[1].pmid == "12345"
    # the stored vectors are the embedder's, so a chunk finds itself first
    chunk = loaded.chunks[3]
    scores, ids = loaded.faiss_index.search(fake_embedder.encode_documents([chunk.embed_text]), 1)
    assert ids[0][0] == 3 and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    assert set(loaded.articles) == {"microcytosis", "iron-treatment"}


def test_staleness_follows_corpus_and_settings(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    assert not is_up_to_date(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)
    build_index([tiny_corpus], root, fake_embedder)
    assert is_up_to_date(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)
    assert not is_up_to_date(root, [tiny_corpus], ChunkerSettings(max_tokens=100), fake_embedder.checksum)
    assert not is_up_to_date(root, [tiny_corpus], ChunkerSettings(), "other-model")
    path = tiny_corpus / "microcytosis.md"
    path.write_text(path.read_text().replace("first test", "first investigation"))
    assert not is_up_to_date(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)


def test_bad_article_is_skipped_and_reported_unless_strict(tiny_corpus, tmp_path, fake_embedder):
    (tiny_corpus / "broken.md").write_text("---\nid: broken\ntitle: Q?\nreview_status: approved-ish\nlast_updated: 2025-01-01\n---\n\nText.\n")
    root = tmp_path / "index"
    report = build_index([tiny_corpus], root, fake_embedder)
    assert report.articles == 2 and [Path(s).name for s in report.skipped] == ["broken.md"]
    assert any("broken.md:4" in str(p) and "unknown review status" in str(p) for p in report.problems)
    assert load_index(root).manifest.skipped[0].line == 4
    published = index_store.current_dir(root)
    with pytest.raises(BuildFailed) as info:
        build_index([tiny_corpus], root, fake_embedder, strict=True)
    assert info.value.problems and index_store.current_dir(root) == published


def test_failed_build_leaves_the_published_index(tiny_corpus, tmp_path, fake_embedder, monkeypatch):
    root = tmp_path / "index"
    first = build_index([tiny_corpus], root, fake_embedder).directory

    class Exploding(FakeEmbedder):
        def encode_documents(self, texts, batch_size=32, progress=None):
            raise RuntimeError("model crashed midway")

    (tiny_corpus / "microcytosis.md").write_text((tiny_corpus / "microcytosis.md").read_text().replace("first test", "first step"))
    with pytest.raises(RuntimeError):
        build_index([tiny_corpus], root, Exploding())
    assert index_store.current_dir(root) == first
    assert load_index(root).directory == first

    def failing_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(index_store, "write_build", failing_write)
    with pytest.raises(OSError):
        build_index([tiny_corpus], root, fake_embedder)
    assert load_index(root).directory == first


KILLED_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fakes import FakeEmbedder
    from indexer.build import build_index

    class Slow(FakeEmbedder):
        def encode_documents(self, texts, batch_size=32, progress=None):
            Path(sys.argv[3]).write_text("embedding")
            time.sleep(60)

    build_index([Path(sys.argv[1])], Path(sys.argv[2]), Slow())
""")


def test_build_killed_midway_leaves_the_published_index(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    first = build_index([tiny_corpus], root, fake_embedder).directory
    marker = tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tiny_corpus), str(root), str(marker)], env=env)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert proc.poll() is None, "the build process died before it started embedding"
            assert time.time() < deadline
            time.sleep(0.05)
        assert list(root.glob(".staging-*")), "the killed build was writing a staging directory"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert index_store.current_dir(root) == first
    assert load_index(root).faiss_index.ntotal > 0
    # the next build clears the debris and publishes
    second = build_index([tiny_corpus], root, fake_embedder).directory
    assert second != first and not list(root.glob(".staging-*"))
    assert sorted(p.name for p in (root / "builds").iterdir()) == sorted([first.name, second.name])


def test_server_refuses_an_index_built_with_another_model(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_embedder)

    class OtherModel(FakeEmbedder):
        name = "test/another-model"
        checksum = "different"

    with pytest.raises(IndexMismatch) as info:
        load_index(root, ModelInfo.of(OtherModel()))
    message = str(info.value)
    assert "test/another-model" in message and "medkb index corpus" in message
    with pytest.raises(IndexMismatch, match="dimension 256 != 128"):
        load_index(root, ModelInfo.of(FakeEmbedder(dim=128)))


def test_a_database_serves_a_build_only_if_made_the_same_way(tiny_corpus, tmp_path, fake_embedder):
    """What `medkb index` with MEDKB_BACKEND=postgres compares before saying "the database already
    serves this build": builds of the same corpus by another encoder, precision or export recipe,
    or with another chunker, have other vectors or chunks (the fake's vectors happen to be the same,
    the manifest's model is not), and are published; a build made again the same way is not. Only
    the corpus fingerprint and the chunk count were compared, so none of these was published."""
    from retrieval.backends.postgres import serves_build

    from fakes import fake_for_encoder

    recipe = fake_for_encoder("onnx-int8")
    recipe.recipe = "int8/1"
    makers = {"torch": (fake_embedder, ChunkerSettings()), "torch again": (fake_embedder, ChunkerSettings()),
              "onnx-fp32": (fake_for_encoder("onnx-fp32"), ChunkerSettings()), "onnx-int8": (fake_for_encoder("onnx-int8"), ChunkerSettings()),
              "another recipe": (recipe, ChunkerSettings()), "another chunker": (fake_embedder, ChunkerSettings(max_tokens=100))}
    builds = {}
    for name, (embedder, chunker) in makers.items():
        build_index([tiny_corpus], tmp_path / name, embedder, chunker)
        builds[name] = load_index(tmp_path / name)
    manifests = {name: build.manifest.to_dict() for name, build in builds.items()}
    # Made again another day, in another time: what the database holds says so (two builds of a
    # tiny corpus can finish within the same second, taking the same time).
    manifests["torch again"]["build"] = {**manifests["torch again"]["build"], "finished_at": "2020-01-01T00:00:00+00:00", "seconds": 99.0}
    for stored in builds:
        for local in builds:
            same = {stored, local} <= {"torch", "torch again"} or stored == local
            assert serves_build(manifests[stored], builds[local]) is same, (stored, local)
    edited = builds["torch"].manifest.to_dict()
    edited["model"]["recipe"] = "x"
    assert not serves_build(edited, builds["torch"])
    assert not serves_build({"not": "a manifest"}, builds["torch"]), "a manifest this medkb cannot read is published over"


def test_a_malformed_manifest_is_one_clear_error(tiny_corpus, tmp_path, fake_embedder):
    import json

    root = tmp_path / "index"
    build = build_index([tiny_corpus], root, fake_embedder).directory
    manifest = json.loads((build / "manifest.json").read_text())
    del manifest["counts"]
    (build / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="manifest.json is malformed"):
        load_index(root)
    (build / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorrupt, match="cannot be read"):
        load_index(root)


def test_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(IndexMissing, match="medkb index"):
        load_index(tmp_path / "nothing")


def test_several_corpus_directories_in_one_build(tiny_corpus, tmp_path, fake_embedder):
    from sample_articles import TREAT_BODY, article

    other = tmp_path / "other"
    other.mkdir()
    (other / "x.md").write_text(article("extra-article", "Another question?", TREAT_BODY))
    report = build_index([tiny_corpus, other], tmp_path / "index", fake_embedder)
    assert report.articles == 3
    assert "extra-article" in load_index(tmp_path / "index").articles


def test_an_older_format_is_refused_for_its_format(tiny_corpus, tmp_path, fake_embedder):
    import json

    root = tmp_path / "index"
    build = build_index([tiny_corpus], root, fake_embedder).directory
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["format_version"] = 1
    (build / "manifest.json").write_text(json.dumps(manifest))
    (build / "sections.jsonl").unlink()  # a format-1 build never had it
    with pytest.raises(IndexMismatch, match="has format 1"):
        load_index(root)


def test_an_older_or_damaged_manifest_is_stale_not_an_error(tiny_corpus, tmp_path, fake_embedder):
    import json

    root = tmp_path / "index"
    build = build_index([tiny_corpus], root, fake_embedder).directory
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["format_version"] = 2
    (build / "manifest.json").write_text(json.dumps(manifest))
    assert not is_up_to_date(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)
    (build / "manifest.json").write_text("{not json")
    assert not is_up_to_date(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)


def test_the_spelling_words_are_counted_at_build_time_and_checked_like_any_data_file(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_embedder)
    loaded = load_index(root, ModelInfo.of(fake_embedder))
    # every word of the chunks' text and the titles, lower-cased, with how often it occurs
    from indexer.spelling import count_words

    expected = count_words([c.text for c in loaded.chunks] + [a.title for a in loaded.articles.values()])
    assert loaded.words == dict(expected) and loaded.words["microcytosis"] >= 1
    assert "spelling.tsv" in {f.path for f in loaded.manifest.files}
    # damaged like any listed data file: refused, naming it
    spelling = loaded.directory / "spelling.tsv"
    spelling.write_text(spelling.read_text(encoding="utf-8").replace("\t", " ", 1), encoding="utf-8")
    with pytest.raises(IndexCorrupt, match="spelling.tsv"):
        index_store.load_build(loaded.directory)


def test_a_build_without_spelling_words_still_loads_and_the_speller_counts_them(tiny_corpus, tmp_path, fake_embedder):
    import json

    from retrieval.abbreviations import Abbreviations
    from retrieval.query_understanding import QueryUnderstanding

    root = tmp_path / "index"
    report = build_index([tiny_corpus], root, fake_embedder)
    directory = report.directory
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "spelling.tsv"]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / "spelling.tsv").unlink()
    loaded = load_index(root, ModelInfo.of(fake_embedder))
    assert loaded.words is None
    with_file = build_index([tiny_corpus], tmp_path / "again", fake_embedder)
    fresh = load_index(tmp_path / "again", ModelInfo.of(fake_embedder))
    assert with_file.directory is not None
    assert QueryUnderstanding(loaded, Abbreviations.load()).vocabulary() == QueryUnderstanding(fresh, Abbreviations.load()).vocabulary()

"""Build, publish and load: round trip, atomic publish under failure and kill, model mismatch."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeEmbedder
from indexer import index_store
from indexer.build import BuildFailed, build_index, is_up_to_date
from indexer.chunking import ChunkerSettings
from indexer.index_store import IndexMismatch, IndexMissing, load_index
from server.search import SearchService

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_round_trip(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    report = build_index([tiny_corpus], root, fake_embedder)
    assert report.articles == 2 and report.chunks > 0 and report.skipped == []
    loaded = load_index(root)
    assert loaded.directory == report.directory
    assert [c.id for c in loaded.chunks] == [c["id"] for c in map(lambda c: c.to_dict(), loaded.chunks)]
    assert loaded.faiss_index.ntotal == report.chunks == loaded.manifest["counts"]["chunks"]
    m = loaded.manifest
    assert m["model"] == {"name": fake_embedder.name, "checksum": fake_embedder.checksum, "dim": 256, "normalize": True, "max_seq_length": 256, "metric": "inner_product",
                          "encoder": "torch", "encoder_detail": ""}
    assert m["chunker"] == ChunkerSettings().to_dict()
    assert m["counts"]["articles"] == 2 and m["counts"]["citations_resolved"] == report.citations_resolved > 0
    assert len(m["corpus"]["fingerprint"]) == 64 and m["medkb_version"] and m["build"]["finished_at"]
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
    assert load_index(root).manifest["skipped"][0]["line"] == 4
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
        SearchService(load_index(root), OtherModel())
    message = str(info.value)
    assert "test/another-model" in message and "medkb index corpus" in message
    with pytest.raises(IndexMismatch, match="dimension 256 != 128"):
        SearchService(load_index(root), FakeEmbedder(dim=128))


def test_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(IndexMissing, match="medkb index"):
        load_index(tmp_path / "nothing")


def test_several_corpus_directories_in_one_build(tiny_corpus, tmp_path, fake_embedder):
    from conftest import TREAT_BODY, article

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

"""The ONNX Runtime encoder: the export cache, the encoder setting, and the refusal of an index
built with another encoder. Tests marked `model` export and run the real packaged model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeEmbedder
from indexer.build import build_index
from indexer.embedding import ENCODERS, encoder_of, load_embedder
from indexer.index_store import IndexMismatch, check_compatible, load_index
from indexer.onnx_embedding import OnnxExportError, ensure_onnx_model
from medkb.settings import Settings


class FakeOnnxEmbedder(FakeEmbedder):
    encoder = "onnx-int8"


def _check(manifest: dict, embedder: FakeEmbedder, encoder: str | None) -> None:
    check_compatible(manifest, embedder.name, embedder.checksum, embedder.dim, embedder.normalize, encoder=encoder)


# ---------------------------------------------------------------- manifest and refusal


def test_the_manifest_records_the_encoder_and_a_mismatch_is_refused(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, FakeOnnxEmbedder())
    manifest = load_index(root).manifest
    assert manifest["model"]["encoder"] == "onnx-int8"
    _check(manifest, FakeOnnxEmbedder(), "onnx-int8")
    with pytest.raises(IndexMismatch) as info:
        _check(manifest, FakeEmbedder(), "torch")
    message = str(info.value)
    assert "built with the onnx-int8 encoder" in message and "encoded with torch" in message
    assert "MEDKB_ENCODER=torch medkb index corpus" in message and "MEDKB_ENCODER=onnx-int8" in message


def test_an_index_that_names_no_encoder_was_built_with_torch(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_embedder)
    manifest = load_index(root).manifest
    assert manifest["model"]["encoder"] == "torch" == encoder_of(fake_embedder)
    del manifest["model"]["encoder"]  # as in builds made before the encoder choice
    _check(manifest, fake_embedder, "torch")
    with pytest.raises(IndexMismatch, match="built with the torch encoder.*MEDKB_ENCODER=onnx-fp32 medkb index corpus"):
        _check(manifest, fake_embedder, "onnx-fp32")
    _check(manifest, fake_embedder, None)  # callers that do not say skip the encoder check


# ---------------------------------------------------------------- the setting


def test_the_encoder_setting(monkeypatch, tmp_path):
    assert Settings.from_env({}).encoder == "torch"
    assert Settings.from_env({"MEDKB_ENCODER": "onnx-int8"}).encoder == "onnx-int8"
    with pytest.raises(ValueError, match="MEDKB_ENCODER='onnx'"):
        Settings.from_env({"MEDKB_ENCODER": "onnx"})
    assert ENCODERS == ("torch", "onnx-fp32", "onnx-int8")
    with pytest.raises(ValueError, match="unknown encoder 'tensorrt'"):
        load_embedder(tmp_path, encoder="tensorrt")
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-int4")
    with pytest.raises(ValueError, match="unknown encoder 'onnx-int4' \\(MEDKB_ENCODER\\)"):
        load_embedder(tmp_path)


def test_the_eval_cache_keeps_one_index_per_encoder(tiny_corpus, tmp_path):
    from evals.pipeline import cached_index

    logs: list[str] = []
    torch_root = cached_index([tiny_corpus], tmp_path / "cache", FakeEmbedder(), log=logs.append)
    onnx_root = cached_index([tiny_corpus], tmp_path / "cache", FakeOnnxEmbedder(), log=logs.append)
    assert torch_root != onnx_root
    assert cached_index([tiny_corpus], tmp_path / "cache", FakeEmbedder(), log=logs.append) == torch_root
    assert cached_index([tiny_corpus], tmp_path / "cache", FakeOnnxEmbedder(), log=logs.append) == onnx_root
    assert sum("building" in m for m in logs) == 2 and sum("reusing" in m for m in logs) == 2
    assert load_index(onnx_root).manifest["model"]["encoder"] == "onnx-int8"

    class OtherRecipe(FakeOnnxEmbedder):
        encoder_detail = "onnxruntime x; int8/99"

    # Another ONNX export recipe makes other vectors: same slot, embedded again.
    assert cached_index([tiny_corpus], tmp_path / "cache", OtherRecipe(), log=logs.append) == onnx_root
    assert logs[-2].startswith("building") and load_index(onnx_root).manifest["model"]["encoder_detail"] == "onnxruntime x; int8/99"


# ---------------------------------------------------------------- the export cache (no real model)


@pytest.fixture
def fake_model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights v1")
    return model


class Recorder:
    def __init__(self, fail: bool = False):
        self.calls: list[str] = []
        self.fail = fail

    def export(self, model_dir: Path, out: Path) -> None:
        self.calls.append("export")
        out.write_bytes(b"onnx fp32 " + (model_dir / "model.safetensors").read_bytes())
        if self.fail:
            raise RuntimeError("exporter broke halfway")

    def quantize(self, fp32: Path, out: Path) -> None:
        self.calls.append("quantize")
        out.write_bytes(b"int8 of " + fp32.read_bytes())


def test_export_once_then_reuse_and_redo_when_the_note_does_not_match(fake_model_dir, tmp_path):
    cache, rec = tmp_path / "onnx", Recorder()
    int8 = ensure_onnx_model(fake_model_dir, "int8", cache, exporter=rec.export, quantizer=rec.quantize)
    assert rec.calls == ["export", "quantize"]
    fp32 = int8.parent / "model-fp32.onnx"
    assert int8.name == "model-int8.onnx" and fp32.exists()
    note = json.loads((int8.parent / "model-int8.json").read_text())
    assert int8.parent.name == note["weights_sha256"][:16] and note["onnx_bytes"] == int8.stat().st_size
    assert ensure_onnx_model(fake_model_dir, "int8", cache, exporter=rec.export, quantizer=rec.quantize) == int8
    assert rec.calls == ["export", "quantize"]  # reused

    # A note naming other weights (say, copied from elsewhere) means export again.
    note_path = fp32.with_suffix(".json")
    note = json.loads(note_path.read_text())
    note_path.write_text(json.dumps({**note, "weights_sha256": "0" * 64}))
    ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=rec.export, quantizer=rec.quantize)
    assert rec.calls == ["export", "quantize", "export"]
    # A truncated file (size differs from the note) too.
    fp32.write_bytes(b"trunc")
    ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=rec.export, quantizer=rec.quantize)
    assert rec.calls[-1] == "export" and len(rec.calls) == 4

    # New weights: a new folder keyed by their checksum.
    (fake_model_dir / "model.safetensors").write_bytes(b"weights v2")
    other = ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=rec.export, quantizer=rec.quantize)
    assert other.parent != int8.parent and other.read_bytes() == b"onnx fp32 weights v2"
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_export_leaves_nothing_behind(fake_model_dir, tmp_path):
    cache = tmp_path / "onnx"
    with pytest.raises(OnnxExportError, match="could not make the ONNX fp32 model.*exporter broke halfway"):
        ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=Recorder(fail=True).export)
    assert [p.name for p in cache.rglob("*") if p.is_file()] == [".lock"]
    with pytest.raises(ValueError, match="unknown ONNX precision 'fp16'"):
        ensure_onnx_model(fake_model_dir, "fp16", cache)


# ---------------------------------------------------------------- the real packaged model


SENTENCES = [
    "What are the causes of chronic microcytic anemia?",
    "Sideroblastic anemia, thalassemia trait and lead poisoning cause microcytosis [1].",
    "IDA",
    "how is it treated",
    "Oral iron once daily or on alternate days is first-line treatment for iron deficiency; intravenous iron suits "
    "malabsorption and ongoing blood loss. " * 12,  # longer than 256 word pieces: truncated
]


@pytest.fixture(scope="module")
def torch_embedder():
    return load_embedder(encoder="torch")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.mark.model
def test_onnx_fp32_round_trip_matches_torch(torch_embedder, onnx_cache):
    embedder = load_embedder(encoder="onnx-fp32", onnx_cache_dir=onnx_cache)
    assert (embedder.name, embedder.dim, embedder.checksum, embedder.max_seq_length) == \
           (torch_embedder.name, torch_embedder.dim, torch_embedder.checksum, torch_embedder.max_seq_length)
    assert embedder.encoder == "onnx-fp32" and embedder.path.parent.name == embedder.checksum[:16]
    reference = torch_embedder.encode_documents(SENTENCES)
    documents = embedder.encode_documents(SENTENCES, batch_size=2)  # padded batches of differing lengths
    queries = np.vstack([embedder.encode_queries([s]) for s in SENTENCES])
    for vectors in (documents, queries):
        assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        assert (vectors * reference).sum(axis=1).min() > 0.999
    assert embedder.count_tokens(SENTENCES) == torch_embedder.count_tokens(SENTENCES)

    # A second load reuses the export.
    mtime = embedder.path.stat().st_mtime_ns
    again = load_embedder(encoder="onnx-fp32", onnx_cache_dir=onnx_cache)
    assert again.path == embedder.path and again.path.stat().st_mtime_ns == mtime


@pytest.mark.model
def test_onnx_int8_stays_close_to_torch(torch_embedder, onnx_cache):
    embedder = load_embedder(encoder="onnx-int8", onnx_cache_dir=onnx_cache)
    assert embedder.encoder == "onnx-int8" and embedder.path.name == "model-int8.onnx"
    cosines = (embedder.encode_documents(SENTENCES) * torch_embedder.encode_documents(SENTENCES)).sum(axis=1)
    assert cosines.min() > 0.97, cosines


# ---------------------------------------------------------------- wiring: server and `medkb index --if-stale`


def test_the_search_service_refuses_an_index_made_by_another_encoder(tiny_corpus, tmp_path, fake_embedder):
    from server.search import SearchService

    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_embedder)
    SearchService(load_index(root), FakeEmbedder())
    with pytest.raises(IndexMismatch, match="MEDKB_ENCODER=onnx-int8 medkb index corpus"):
        SearchService(load_index(root), FakeOnnxEmbedder())


def test_if_stale_rebuilds_when_the_encoder_changes(tiny_corpus, tmp_path, fake_embedder):
    from indexer.build import is_up_to_date
    from indexer.chunking import ChunkerSettings

    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_embedder)
    assert is_up_to_date(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum, encoder="torch")
    assert not is_up_to_date(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum, encoder="onnx-fp32")

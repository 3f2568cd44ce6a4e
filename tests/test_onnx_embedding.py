"""The ONNX Runtime encoder: the export cache, the encoder setting, the manifest's record of the
encoder, and the refusal (or rebuild) of an index built with another encoder. Tests marked
`model` export and run the real packaged model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index, staleness
from indexer.chunking import ChunkerSettings
from indexer.embedding import DEFAULT_ENCODER, ENCODERS, ModelInfo, configured_encoder, load_embedder, model_identity, resolve_encoder
from indexer.index_store import IndexMismatch, load_index
from indexer.onnx_embedding import RECIPE_IDS, OnnxExportError, check_export_folder, ensure_onnx_model
from medkb.settings import Settings

from fakes import FakeEmbedder, fake_for_encoder

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- manifest and refusal


def test_the_manifest_records_the_encoder_and_a_mismatch_is_refused(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_for_encoder("onnx-int8"))
    model = load_index(root).manifest.model
    assert (model.encoder, model.precision, model.recipe, model.setting) == ("onnx", "int8", RECIPE_IDS["int8"], "onnx-int8")
    load_index(root, ModelInfo.of(fake_for_encoder("onnx-int8")))
    with pytest.raises(IndexMismatch) as info:
        load_index(root, ModelInfo.of(fake_for_encoder("torch")))
    message = str(info.value)
    assert "built with the onnx-int8 encoder, but queries would be encoded with torch" in message
    assert "MEDKB_ENCODER=torch medkb index --if-stale" in message and "set MEDKB_ENCODER=onnx-int8" in message
    with pytest.raises(IndexMismatch, match="onnx-int8 encoder, but queries would be encoded with onnx-fp32"):
        load_index(root, ModelInfo.of(fake_for_encoder("onnx-fp32")))


def test_an_index_from_another_export_recipe_is_refused(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    old = fake_for_encoder("onnx-int8")
    old.recipe = "int8/1"
    build_index([tiny_corpus], root, old)
    with pytest.raises(IndexMismatch, match=f"export recipe int8/1 \\(queries: {RECIPE_IDS['int8']}\\).*MEDKB_ENCODER=onnx-int8 medkb index --if-stale"):
        load_index(root, ModelInfo.of(fake_for_encoder("onnx-int8")))


def test_a_manifest_that_names_no_encoder_was_built_with_torch(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_embedder)
    manifest_path = root / "current" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    assert (data["model"]["encoder"], data["model"]["precision"], data["model"]["recipe"]) == ("torch", "fp32", "")
    for name in ("encoder", "precision", "recipe"):  # as in builds made before the encoder choice
        del data["model"][name]
    manifest_path.write_text(json.dumps(data))
    load_index(root, ModelInfo.of(fake_embedder))
    with pytest.raises(IndexMismatch, match="built with the torch encoder.*MEDKB_ENCODER=onnx-fp32 medkb index --if-stale"):
        load_index(root, ModelInfo.of(fake_for_encoder("onnx-fp32")))


def test_staleness_names_another_encoder(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_embedder)
    args = (root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)
    assert staleness(*args, ModelInfo.of(fake_embedder)) is None
    reason = staleness(*args, ModelInfo.of(fake_for_encoder("onnx-int8")))
    assert "torch encoder, but queries would be encoded with onnx-int8" in reason
    # What `medkb index --if-stale` prints before rebuilding: why, not the refusal's advice to rebuild.
    assert "Rebuild" not in reason and "medkb index" not in reason and "set MEDKB_ENCODER" not in reason, reason
    # build_index(if_stale=True) rebuilds rather than keeping the torch build.
    report = build_index([tiny_corpus], root, fake_for_encoder("onnx-int8"), if_stale=True)
    assert load_index(root).manifest.model.setting == "onnx-int8" and report.chunks > 0


@pytest.mark.parametrize("asked", [{"dim": 7}, {"encoder": "torch", "precision": "fp32", "recipe": ""}, {"recipe": "int8/99"}])
def test_a_mismatch_says_what_to_run_and_its_reason_does_not(asked, tiny_corpus, tmp_path):
    """The refusal (serve, search) tells the user what to run; its reason alone is what a caller that
    acts on it shows (`medkb index --if-stale` rebuilding, a server refusing a new build)."""
    import dataclasses

    root = tmp_path / "index"
    build_index([tiny_corpus], root, fake_for_encoder("onnx-int8"))
    manifest = load_index(root).manifest
    with pytest.raises(IndexMismatch) as info:
        manifest.check_model(dataclasses.replace(manifest.model, **asked))
    reason = info.value.reason
    assert str(info.value).startswith(reason + ". Rebuild it with "), str(info.value)
    assert "Rebuild" not in reason and "medkb index" not in reason and not reason.endswith("."), reason


def test_the_build_cache_keeps_vectors_apart_by_encoder(fake_embedder):
    from indexer.build_cache import model_key

    keys = {model_key(fake_for_encoder(e)) for e in ENCODERS}
    assert len(keys) == 3
    assert model_key(fake_embedder) == model_key(fake_for_encoder("torch"))


# ---------------------------------------------------------------- the setting


def test_the_encoder_setting(monkeypatch, tmp_path):
    assert DEFAULT_ENCODER == "auto" and describe_default("MEDKB_ENCODER") == "auto"  # the table's default is the loader's
    assert Settings.from_env({}).encoder == resolve_encoder("auto") == configured_encoder() in ENCODERS
    assert Settings.from_env({"MEDKB_ENCODER": "onnx-int8"}).encoder == "onnx-int8"
    with pytest.raises(ValueError, match="unknown encoder 'onnx'.*choose one of auto, torch, onnx-fp32, onnx-int8"):
        Settings.from_env({"MEDKB_ENCODER": "onnx"})
    with pytest.raises(ValueError, match="unknown encoder 'tensorrt'"):
        load_embedder(tmp_path, encoder="tensorrt")
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-int4")
    with pytest.raises(ValueError, match="unknown encoder 'onnx-int4' \\(MEDKB_ENCODER\\)"):
        load_embedder(tmp_path)


def describe_default(env: str) -> str:
    from medkb.settings import describe

    return next(default for name, default, _ in describe() if name == env)


@pytest.mark.parametrize("vnni, expected", [(True, "onnx-int8"), (False, "onnx-fp32")])
def test_auto_is_int8_only_where_the_cpu_sums_int8_products_in_int32(vnni, expected, monkeypatch):
    """auto: onnx-int8 on a CPU with AVX-512 VNNI (where int8 stayed within issue 16's 0.005
    nDCG@10 on every dev set), onnx-fp32 on one without (where MedQuAD-QA lost 0.0074). A setting
    that names an encoder is taken as it is on either."""
    import indexer.embedding

    assert resolve_encoder("auto", has_vnni=lambda: vnni) == expected
    for named in ENCODERS:
        assert resolve_encoder(named, has_vnni=lambda: vnni) == named
    monkeypatch.setattr(indexer.embedding, "cpu_has_vnni", lambda: vnni)
    assert Settings.from_env({}).encoder == Settings().encoder == expected
    assert Settings.from_env({"MEDKB_ENCODER": "auto"}).encoder == expected
    monkeypatch.delenv("MEDKB_ENCODER", raising=False)
    assert configured_encoder() == expected


def test_this_machine_s_cpu_reading_agrees_with_its_cpu_flags():
    """numpy's dispatch table, which auto reads, says VNNI exactly when the kernel's CPU flags do."""
    from indexer.embedding import cpu_has_vnni

    flags_path = Path("/proc/cpuinfo")
    if not flags_path.exists():
        pytest.skip("no /proc/cpuinfo on this platform to check against")
    flags = next((line.split(":", 1)[1].split() for line in flags_path.read_text().splitlines() if line.startswith("flags")), [])
    assert cpu_has_vnni() == ("avx512_vnni" in flags)


def test_model_identity_names_the_encoder_without_exporting(fake_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info = model_identity(fake_model_dir, "onnx-int8")
    assert (info.dim, info.max_seq_length, info.encoder, info.precision, info.recipe) == (8, 16, "onnx", "int8", RECIPE_IDS["int8"])
    assert model_identity(fake_model_dir, "torch").setting == "torch"
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-fp32")
    assert model_identity(fake_model_dir).setting == "onnx-fp32"
    assert not (tmp_path / "var").exists()  # nothing exported


class _Loading(Exception):
    """Raised by a stand-in for the model loader, carrying what it was asked for."""


def _record_loads(*args, **kwargs):
    raise _Loading(kwargs)


def test_the_onnx_exports_are_kept_beside_the_index_root_wherever_medkb_runs(tmp_path):
    """A run from another working folder finds the export made by the last one (exporting takes tens of seconds)."""
    settings = Settings.from_env({"MEDKB_INDEX_DIR": str(tmp_path / "var" / "index")})
    assert settings.onnx_cache_dir() == tmp_path / "var" / "onnx"
    assert Settings.from_env({"MEDKB_INDEX_DIR": str(tmp_path / "index"), "MEDKB_ONNX_DIR": str(tmp_path / "exports")}).onnx_cache_dir() == tmp_path / "exports"


def test_every_model_load_from_the_settings_uses_their_onnx_folder(tiny_corpus, tmp_path, monkeypatch):
    """The server (both backends), `medkb search`, the model-loading commands and `medkb index` pass
    MEDKB_ONNX_DIR's folder on to the loader (stopped there: no model is loaded)."""
    import indexer.embedding
    import indexer.lazy_embedder
    from medkb import cli
    from server.app import load_service

    monkeypatch.delenv("MEDKB_ONNX_DIR", raising=False)  # conftest shares the repository's export
    onnx = tmp_path / "state" / "onnx"
    settings = Settings(index_dir=tmp_path / "state" / "index")
    assert settings.onnx_cache_dir() == onnx
    monkeypatch.setattr(indexer.embedding, "load_embedder", _record_loads)
    import indexer.index_store

    # The embedded backend checks the published index before it makes the model: stand one in.
    monkeypatch.setattr(indexer.index_store, "load_index", lambda root, model=None: object())
    for load in (lambda: load_service(settings),
                 lambda: load_service(Settings(index_dir=settings.index_dir, backend="postgres", database_url="postgresql://medkb@127.0.0.1:1/medkb")),
                 lambda: cli._load_model(settings)):
        with pytest.raises(_Loading) as asked:
            load()
        assert asked.value.args[0]["onnx_dir"] == onnx
    monkeypatch.setenv("MEDKB_INDEX_DIR", str(settings.index_dir))
    with pytest.raises(_Loading) as asked:
        cli.main(["search", "iron"])
    assert asked.value.args[0]["onnx_dir"] == onnx

    lazy = indexer.lazy_embedder.LazyEmbedder(encoder="onnx-fp32", onnx_dir=onnx)
    with pytest.raises(_Loading) as asked:
        lazy.model()
    assert asked.value.args[0]["onnx_dir"] == onnx

    made: list[dict] = []

    class Lazy(indexer.lazy_embedder.LazyEmbedder):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(indexer.lazy_embedder, "LazyEmbedder", Lazy)
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-fp32")
    with pytest.raises(_Loading) as asked:  # a new corpus is chunked and embedded: the model loads
        cli.main(["index", str(tiny_corpus)])
    assert made and made[0]["onnx_dir"] == onnx and asked.value.args[0]["onnx_dir"] == onnx


def test_the_servers_and_builds_a_benchmark_starts_reuse_its_onnx_export(tmp_path, monkeypatch):
    """`medkb bench` indexes into a temporary folder and starts `medkb serve` and `medkb index` on it:
    they kept their exports beside that index, so each run exported the model again inside the timed
    MedQuAD build and in the server whose RSS it reports. They are told the bench's own folder."""
    import evals.bench
    from medkb import cli

    seen: dict[str, str | None] = {}

    def run_bench(*args, **kwargs):
        seen["MEDKB_ONNX_DIR"] = os.environ.get("MEDKB_ONNX_DIR")  # what the processes it starts inherit
        return {}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_load_model", lambda settings, document_threads=1: FakeEmbedder())
    monkeypatch.setattr(evals.bench, "run_bench", run_bench)
    monkeypatch.setattr(evals.bench, "format_table", lambda results: "")
    monkeypatch.setenv("MEDKB_INDEX_DIR", "state/index")  # relative: the children start in the repository
    monkeypatch.setenv("MEDKB_ONNX_DIR", "set by the bench")  # so that monkeypatch restores what the bench sets
    monkeypatch.delenv("MEDKB_ONNX_DIR")
    assert cli.main(["bench", "--sizes", "default", "--no-http", "--out", str(tmp_path / "bench.json")]) == 0
    assert seen["MEDKB_ONNX_DIR"] == str(tmp_path / "state" / "onnx")


def test_the_eval_cache_keeps_one_index_per_encoder(tiny_corpus, tmp_path):
    from evals.pipeline import cached_index

    logs: list[str] = []
    cache = tmp_path / "cache"
    torch_root = cached_index([tiny_corpus], cache, FakeEmbedder(), log=logs.append)
    onnx_root = cached_index([tiny_corpus], cache, fake_for_encoder("onnx-int8"), log=logs.append)
    assert torch_root != onnx_root
    assert cached_index([tiny_corpus], cache, FakeEmbedder(), log=logs.append) == torch_root
    assert cached_index([tiny_corpus], cache, fake_for_encoder("onnx-int8"), log=logs.append) == onnx_root
    assert sum("building" in m for m in logs) == 2 and sum("reusing" in m for m in logs) == 2
    assert load_index(onnx_root).manifest.model.setting == "onnx-int8"

    # Another ONNX export recipe makes other vectors: same slot, embedded again.
    other = fake_for_encoder("onnx-int8")
    other.recipe = "int8/99"
    assert cached_index([tiny_corpus], cache, other, log=logs.append) == onnx_root
    assert logs[-2].startswith("building") and load_index(onnx_root).manifest.model.recipe == "int8/99"


# ---------------------------------------------------------------- the command line (fake model)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tests" / "fake_model_cli.py"), *args], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), **env})


def test_index_if_stale_rebuilds_and_serve_refuses_another_encoder(tiny_corpus, tmp_path):
    root = str(tmp_path / "index")
    env = {"MEDKB_BUILD_CACHE_MB": "0"}
    assert _cli("index", str(tiny_corpus), "--index-dir", root, env={**env, "MEDKB_ENCODER": "torch"}).returncode == 0
    same = _cli("index", str(tiny_corpus), "--index-dir", root, "--if-stale", env={**env, "MEDKB_ENCODER": "torch"})
    assert same.returncode == 0 and "up to date" in same.stdout

    serve = _cli("serve", "--index-dir", root, "--port", "1", env={**env, "MEDKB_ENCODER": "onnx-int8"})
    assert serve.returncode == 2
    assert "built with the torch encoder, but queries would be encoded with onnx-int8" in serve.stderr

    rebuilt = _cli("index", str(tiny_corpus), "--index-dir", root, "--if-stale", env={**env, "MEDKB_ENCODER": "onnx-int8"})
    assert rebuilt.returncode == 0, rebuilt.stderr
    said = next(line for line in rebuilt.stderr.splitlines() if "rebuilding" in line)
    assert said.startswith("medkb index: rebuilding: the index was built with the torch encoder"), said
    assert "Rebuild" not in said and "make serve" not in said and "to serve it as it is" not in said, said
    assert load_index(Path(root)).manifest.model.setting == "onnx-int8"


# ---------------------------------------------------------------- the export cache (no real model)


@pytest.fixture
def fake_model_dir(tmp_path: Path) -> Path:
    """A sentence-transformers folder's configuration (Transformer -> mean Pooling -> Normalize)
    with stand-in weights: enough for the identity and the export cache, not to run."""
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights v1")
    (model / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True}))
    (model / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16, "do_lower_case": False}))
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


def test_a_failed_export_leaves_nothing_that_is_read(fake_model_dir, tmp_path):
    cache = tmp_path / "onnx"
    with pytest.raises(OnnxExportError, match="could not make the ONNX fp32 model.*exporter broke halfway"):
        ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=Recorder(fail=True).export)
    assert [p.name for p in cache.rglob("*") if p.is_file()] == [".lock"]
    with pytest.raises(ValueError, match="unknown ONNX precision 'fp16'"):
        ensure_onnx_model(fake_model_dir, "fp16", cache)


@pytest.mark.parametrize("where", ["a-file", "a-file/onnx"])
def test_an_export_folder_that_cannot_be_made_is_one_clear_error(fake_model_dir, tmp_path, where):
    """MEDKB_ONNX_DIR naming a file (or a folder under one) was a bare NotADirectoryError from
    mkdir, a traceback out of `medkb index` and of the server's startup."""
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    cache, rec = tmp_path / where, Recorder()
    for attempt in (lambda: check_export_folder(fake_model_dir, "fp32", cache),
                    lambda: ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=rec.export)):
        with pytest.raises(OnnxExportError, match=f"cannot keep the ONNX export in {tmp_path / where}.*MEDKB_ONNX_DIR") as caught:
            attempt()
        assert "\n" not in str(caught.value)
    assert rec.calls == []


def test_checking_the_export_folder_exports_nothing(fake_model_dir, tmp_path):
    cache, rec = tmp_path / "onnx", Recorder()
    check_export_folder(fake_model_dir, "int8", cache)  # can be made: fine, and nothing is made but the folder
    assert not [p for p in cache.rglob("*") if p.suffix in (".onnx", ".json")]
    ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=rec.export)
    check_export_folder(fake_model_dir, "fp32", cache)
    assert rec.calls == ["export"]


def test_a_killed_export_is_not_read_and_its_debris_is_cleared(fake_model_dir, tmp_path):
    """A process killed mid-export leaves a temporary file (never the final name), or a final file
    without its note (killed between the two renames): neither is used; the next export redoes it."""
    cache, rec = tmp_path / "onnx", Recorder()
    path = ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=rec.export)
    debris = path.parent / ".model-fp32.deadbeef.onnx.tmp"
    debris.write_bytes(b"half an export")
    path.with_suffix(".json").unlink()  # the note never made it
    again = ensure_onnx_model(fake_model_dir, "fp32", cache, exporter=rec.export)
    assert again == path and rec.calls == ["export", "export"] and not debris.exists()


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
    embedder = load_embedder(encoder="onnx-fp32", onnx_dir=onnx_cache)
    assert (embedder.name, embedder.dim, embedder.checksum, embedder.max_seq_length) == \
           (torch_embedder.name, torch_embedder.dim, torch_embedder.checksum, torch_embedder.max_seq_length)
    assert ModelInfo.of(embedder).setting == "onnx-fp32" and embedder.path.parent.name == embedder.checksum[:16]
    assert ModelInfo.of(embedder) == model_identity(encoder="onnx-fp32")  # what `medkb serve` checks before loading
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
    again = load_embedder(encoder="onnx-fp32", onnx_dir=onnx_cache)
    assert again.path == embedder.path and again.path.stat().st_mtime_ns == mtime


@pytest.mark.model
def test_onnx_int8_stays_close_to_torch(torch_embedder, onnx_cache):
    embedder = load_embedder(encoder="onnx-int8", onnx_dir=onnx_cache)
    assert ModelInfo.of(embedder) == model_identity(encoder="onnx-int8") and embedder.path.name == "model-int8.onnx"
    cosines = (embedder.encode_documents(SENTENCES) * torch_embedder.encode_documents(SENTENCES)).sum(axis=1)
    assert cosines.min() > 0.97, cosines


@pytest.mark.model
def test_int8_quantization_keeps_the_feed_forward_outputs_fp32_and_leaves_logging_as_it_was(onnx_cache, tmp_path):
    import onnx

    fp32 = load_embedder(encoder="onnx-fp32", onnx_dir=onnx_cache).path
    # In a fresh process, as a server quantizing at first use would (pytest's own handlers on the
    # root logger would hide a handler added by logging.warning).
    code = ("import logging, sys\nfrom pathlib import Path\nfrom indexer.onnx_embedding import quantize_int8\n"
            "root = logging.getLogger()\nbefore = (len(root.handlers), root.level)\n"
            "quantize_int8(Path(sys.argv[1]), Path(sys.argv[2]))\n"
            "print(before == (len(root.handlers), root.level))")
    done = subprocess.run([sys.executable, "-c", code, str(fp32), str(tmp_path / "int8.onnx")],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"], "no handler or level left on the root logger"
    assert "pre-processing" not in done.stderr and "INFO" not in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "int8.onnx"], "nothing else is left beside it"
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    # Six layers: the five other weight products of each (query, key, value, attention output,
    # feed-forward input: 5 x 6 = 30) dynamic int8; the six feed-forward output projections fp32,
    # beside the two attention products per layer (query x key, weights x value: 12), which have no weights.
    assert (ops.count("MatMulInteger"), ops.count("MatMul")) == (30, 6 + 12)


@pytest.mark.model
def test_documents_embedded_on_several_threads_come_back_the_same_and_in_order(onnx_cache):
    one = load_embedder(encoder="onnx-fp32", onnx_dir=onnx_cache)
    several = load_embedder(encoder="onnx-fp32", onnx_dir=onnx_cache, document_threads=3)
    texts = [f"{s} ({i})" for i, s in enumerate(SENTENCES * 5)]  # more batches than threads, of differing lengths
    heard: list[int] = []
    vectors = several.encode_documents(texts, batch_size=2, progress=heard.append)
    assert np.array_equal(vectors, one.encode_documents(texts, batch_size=2))
    assert sum(heard) == len(texts) and max(heard) <= 2
    for i in (0, len(texts) // 2, len(texts) - 1):  # row i is text i's vector, not another batch's
        assert np.allclose(vectors[i], one.encode_queries([texts[i]])[0], atol=1e-5)
    with pytest.raises(ValueError, match="at least 1"):
        load_embedder(encoder="onnx-fp32", onnx_dir=onnx_cache, document_threads=0)


# ---------------------------------------------------------------- several model calls at once, without the model


class _Encoding:
    def __init__(self, text: str):
        self.ids = text.split()


def _scheduling_embedder(document_threads: int, fail_on_call: int | None = None):
    """An OnnxEmbedder whose tokenizer and model call are stand-ins (no model is loaded): a text's
    vector is (its length in words, its first word's number); call number `fail_on_call` raises."""
    import threading
    import time

    from indexer.onnx_embedding import OnnxEmbedder

    embedder = object.__new__(OnnxEmbedder)
    embedder.dim, embedder.max_batch, embedder.document_threads = 2, 8, document_threads
    embedder._tokenize = lambda texts: [_Encoding(t) for t in texts]
    embedder.calls = 0
    lock = threading.Lock()

    def run(encodings):
        with lock:
            embedder.calls += 1
            call = embedder.calls
        time.sleep(0.001 * (call % 4))  # batches finish out of order
        if call == fail_on_call:
            raise RuntimeError("the model failed on this batch")
        return np.array([[len(e.ids), int(e.ids[0][1:])] for e in encodings], dtype=np.float32)

    embedder._run = run
    return embedder


TEXTS = [f"w{i} " + "x " * (i * 7 % 23) for i in range(100)]


@pytest.mark.parametrize("batch_size", [1, 3, 8, 32])
@pytest.mark.parametrize("threads", [2, 5, 200])
def test_documents_on_several_threads_come_back_in_input_order_with_every_batch_counted(batch_size, threads):
    heard: list[int] = []
    vectors = _scheduling_embedder(threads).encode_documents(TEXTS, batch_size=batch_size, progress=heard.append)
    assert np.array_equal(vectors, _scheduling_embedder(1).encode_documents(TEXTS, batch_size=batch_size))
    assert [int(v) for v in vectors[:, 1]] == list(range(len(TEXTS))), "row i is text i's vector"
    assert sum(heard) == len(TEXTS) and max(heard) <= min(batch_size, 8)


def test_a_failing_batch_reaches_the_caller_and_the_batches_not_yet_started_are_dropped():
    import threading

    embedder = _scheduling_embedder(2, fail_on_call=3)
    with pytest.raises(RuntimeError, match="failed on this batch"):
        embedder.encode_documents(TEXTS, batch_size=1)  # 100 batches
    ran = embedder.calls
    assert ran < 10, f"{ran} of 100 batches ran after one failed"
    assert not [t for t in threading.enumerate() if t.name.startswith("medkb-embed")], "no embedding thread is left running"


def test_ctrl_c_while_a_batch_is_being_collected_drops_the_batches_not_yet_started():
    embedder = _scheduling_embedder(2)
    heard: list[int] = []

    def progress(n):  # Ctrl-C lands while the progress bar is being drawn, between two results
        heard.append(n)
        if len(heard) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embedder.encode_documents(TEXTS, batch_size=1, progress=progress)  # 100 batches
    assert embedder.calls < 10, f"{embedder.calls} of 100 batches ran after Ctrl-C"

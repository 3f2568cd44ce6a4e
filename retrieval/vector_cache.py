"""Vectors of passage-like texts (an answer's candidate sentences) kept between requests.

Answers rank the sentences of their top passages by meaning, so every /api/ask used to run
the model over 20-40 sentences while holding the model (queries wait behind it). The same
sentences come back whenever questions share a topic, so their vectors are kept here, least
recently used dropped first; only sentences never seen (or dropped) reach the model.

A vector depends only on the model and the exact text, so one cache serves every index build
a server swaps to (`SearchService.over` shares it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np


class VectorCache:
    """Least-recently-used map from a text to its vector (dim,), float32, thread-safe.

    `size` is the most vectors kept (0: nothing is kept, every text reaches the model); at
    384 float32 dimensions (all-MiniLM-L6-v2) 20,000 vectors take about 31 MB. `hits` and
    `misses` count the texts asked for that were served from the cache and that were sent to
    the model (a text repeated within one call counts each time).
    """

    def __init__(self, size: int = 20000):
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def embed(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors (len(texts), dim) for `texts`, in order: cached ones as kept, the others from
        one call `encode(missing)` (each distinct missing text once), then kept. Errors from
        `encode` propagate and nothing is kept from that call."""
        if not texts:
            return np.asarray(encode([]), dtype=np.float32)
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._data.get(text)
                if vector is not None:
                    self._data.move_to_end(text)
                    found[text] = vector
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            encoded = np.asarray(encode(missing), dtype=np.float32)
            if encoded.shape[0] != len(missing):
                raise ValueError(f"encode returned {encoded.shape[0]} vectors for {len(missing)} texts")
            for text, vector in zip(missing, encoded):
                found[text] = vector
        with self._lock:
            if self.size:
                for text in missing:
                    self._data[text] = found[text]
                    self._data.move_to_end(text)
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
            new = set(missing)
            self.misses += sum(1 for t in texts if t in new)
            self.hits += sum(1 for t in texts if t not in new)
        return np.stack([found[t] for t in texts])

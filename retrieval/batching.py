"""Micro-batching of query embeddings: queries that arrive within a few milliseconds of one
another are embedded in one model call instead of one at a time under a lock.

One worker thread owns the model: it takes the first waiting query, gathers whatever else
arrives within `window_ms` (up to `max_batch`), encodes them together and hands each caller
its vector. A transformer encodes a batch of short queries in little more time than one, so
under concurrent load throughput rises with the batch size while one model call at a time
still never oversubscribes the cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

Encode = Callable[[Sequence[str]], np.ndarray]


class QueryBatcher:
    """Embed queries in micro-batches on one worker thread.

    `encode(texts) -> (len(texts), dim)` is called with at most `max_batch` texts at a time,
    never concurrently with itself or with anything run through `run_exclusive`. Errors from
    `encode` reach every caller of that batch. The worker is a daemon thread started on first use.
    """

    def __init__(self, encode: Encode, window_ms: float = 2.0, max_batch: int = 32):
        if window_ms < 0 or max_batch < 1:
            raise ValueError("window_ms must be >= 0 and max_batch >= 1")
        self._encode = encode
        self.window = window_ms / 1000
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[str, Future]] = queue.Queue()
        self._lock = threading.Lock()  # held for every model call
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # model calls made, for tests and benchmarks
        self.queries = 0

    def embed(self, text: str, timeout: float | None = 60.0) -> np.ndarray:
        """The vector (dim,) of one query; blocks until its batch is encoded."""
        self._ensure_worker()
        future: Future = Future()
        self._queue.put((text, future))
        return future.result(timeout=timeout)

    def run_exclusive(self, fn: Callable[[], np.ndarray]) -> np.ndarray:
        """Run another model call (e.g. encoding an answer's sentences) between batches."""
        with self._lock:
            return fn()

    def _ensure_worker(self) -> None:
        if self._worker is None:
            with self._start_lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._run, name="medkb-query-batcher", daemon=True)
                    self._worker.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = _now() + self.window
            while len(batch) < self.max_batch:
                remaining = deadline - _now()
                if remaining <= 0:
                    # Take what is already waiting, without waiting for more.
                    try:
                        batch.append(self._queue.get_nowait())
                        continue
                    except queue.Empty:
                        break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            texts = [text for text, _ in batch]
            try:
                with self._lock:
                    vectors = self._encode(texts)
                self.batches += 1
                self.queries += len(texts)
            except BaseException as exc:  # every waiting caller gets the error, none hangs
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)


def _now() -> float:
    import time

    return time.perf_counter()

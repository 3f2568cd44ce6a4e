"""Micro-batching of query embeddings: queries that arrive within a few milliseconds of one
another are embedded in one model call instead of one at a time under a lock.

One worker thread owns the model: it takes the first waiting query, gathers whatever else
arrives within `window_ms` (up to `max_batch`), encodes them together and hands each caller
its vector. A transformer encodes a batch of short queries in little more time than one, so
under concurrent load throughput rises with the batch size while one model call at a time
still never oversubscribes the cores.

The window is only waited out while other queries are known to be on their way: a search
announces itself (`arriving`) when it starts reading its query and is counted until its
query is queued (or it finds its vector cached, or needs none). A lone query, the usual case
at one client, goes to the model at once instead of waiting `window_ms` for nobody, and on its
own thread: when the model is idle, no query is waiting and no other is announced, the caller
encodes it itself rather than handing it to the worker and waiting to be woken (two thread
switches, measured at about 1.1 ms of a 5 ms query embedding at MedQuAD scale). Queries that
arrive while the model is busy form the next batch whatever the window.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future

import numpy as np

Encode = Callable[[Sequence[str]], np.ndarray]
POLL_SECONDS = 0.0005  # while gathering, how often to look again whether queries are still on their way


class Arrival:
    """One announced query (see `QueryBatcher.arriving`); `done` uncounts it, once."""

    def __init__(self, batcher: "QueryBatcher"):
        self._batcher = batcher
        self._done = False

    def done(self) -> None:
        if not self._done:
            self._done = True
            self._batcher._arrived()


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
        self._arriving = 0  # searches announced and not yet queued (see `arriving`)
        self._in_flight = 0  # queries handed to the worker and not yet answered
        self._count_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Queries handed to the worker thread and not yet answered."""
        return self._in_flight

    @contextlib.contextmanager
    def arriving(self) -> Iterator["Arrival"]:
        """Announce a query that may soon be embedded: while it is counted, a batch being
        gathered waits (at most the window) for it. Pass the yielded Arrival to `embed`; it is
        uncounted when its query is queued, or at the latest when the block ends."""
        arrival = Arrival(self)
        with self._count_lock:
            self._arriving += 1
        try:
            yield arrival
        finally:
            arrival.done()

    def _arrived(self) -> None:
        with self._count_lock:
            self._arriving -= 1

    def embed(self, text: str, timeout: float | None = 60.0, arrival: "Arrival | None" = None) -> np.ndarray:
        """The vector (dim,) of one query; blocks until its batch is encoded. `arrival` (from
        `arriving`) is uncounted once the query is queued."""
        if not self._in_flight and self._arriving <= (arrival is not None and not arrival._done) and self._lock.acquire(blocking=False):
            try:  # nobody to batch with and the model idle: encode here, without the worker
                if arrival is not None:
                    arrival.done()
                return self._encode_batch([text])[0]
            finally:
                self._lock.release()
        self._ensure_worker()
        future: Future = Future()
        with self._count_lock:
            self._in_flight += 1
        self._queue.put((text, future))
        if arrival is not None:
            arrival.done()
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
                try:  # whatever is already waiting joins at once
                    batch.append(self._queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                remaining = deadline - _now()
                if remaining <= 0 or self._arriving <= 0:  # window over, or no one else on the way
                    break
                try:
                    batch.append(self._queue.get(timeout=min(remaining, POLL_SECONDS)))
                except queue.Empty:
                    continue  # look again at who is still on the way
            texts = [text for text, _ in batch]
            try:
                with self._lock:
                    vectors = self._encode_batch(texts)
            except BaseException as exc:  # every waiting caller gets the error, none hangs
                self._answered(len(batch))
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self._answered(len(batch))
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)

    def _answered(self, n: int) -> None:
        with self._count_lock:
            self._in_flight -= n

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """Vectors (len(texts), dim) from one model call; the caller holds the model lock.
        ValueError when the model returns another number of vectors (checked here: failing in
        the worker's hand-out would end it, and every later query would hang)."""
        vectors = self._encode(texts)
        if len(vectors) != len(texts):
            raise ValueError(f"the model returned {len(vectors)} vectors for {len(texts)} queries")
        self.batches += 1
        self.queries += len(texts)
        return vectors


def _now() -> float:
    import time

    return time.perf_counter()

"""Hot reload: a running server swaps to each newly published build, without a restart.

A daemon thread reads the index root's `current` link every `interval` seconds. When it
points at a build other than the one served, the thread loads that build, checked like any
load (format, model, every file's size and SHA-256, counts), builds a `SearchService` over it
that shares the model, the query batcher and the query-vector cache with the one serving
(`SearchService.over`), makes the tables its queries use (`SearchService.warm`: the vocabulary
and speller over the build's words take ~3.5 s of CPU and ~110 MB at MedQuAD scale), and swaps
it in with one attribute assignment: `app.state.search`.

- Requests in flight hold the service they started with (`deps.get_service` hands each request
  one service, which FastAPI reuses for every dependency of that request), so they finish on
  the old build; requests that start after the assignment use the new one. No request waits
  for a load or fails because of one: loading happens on this thread, beside serving.
- The old build is referenced by nothing else, so it is freed when its last request ends; the
  thread then collects garbage and asks the C allocator to return freed memory to the system
  (`malloc_trim`), so resident memory does not grow from swap to swap.
- A build that fails its check is not swapped in: the refusal is logged once, shown by
  /healthz, and the server keeps serving what it served. The next published build is tried.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
import weakref
from pathlib import Path

log = logging.getLogger("medkb.server")


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        pass


def refusal_warning(refused: str, served: str, message: str, location: str | None = None) -> str:
    """The line logged when the newly published build `refused` is not swapped in: which build,
    which one is still served, then the refusal's message (why, and what to run) once, ending
    in one full stop, e.g. "not serving newly published build B, still serving A: the index was
    built with ... Rebuild it with `...`." The message comes last so that nothing is joined
    after its own closing punctuation. A message that opens by naming the refused build itself
    (PostgreSQL's "build B is not in the database ..." or "build B: ...", or the index root's
    "index build <location> is damaged: ..." where `location` is the build's folder) is not made
    to name it twice ("... still serving A: it is not in the database ...", "...: it is damaged: ...")."""
    names = [f"build {refused}"] + ([f"index build {location}", f"index {location}"] if location else [])
    for name in names:
        rest = message.removeprefix(name)
        if rest != message and rest[:1] in (" ", ":"):
            message = rest.removeprefix(":").strip() if rest.startswith(":") else f"it {rest.strip()}"
            break
    return f"not serving newly published build {refused}, still serving {served}: {message.rstrip().rstrip('.')}."


class Reloader:
    """Watches the `current` link of the index root that the served build belongs to and swaps
    `state.search` to each new build (see the module docstring). `status()` is what /healthz shows."""

    def __init__(self, state, interval: float = 1.0, root: Path | None = None):
        self.state = state
        self.interval = interval
        service = state.search
        # With MEDKB_BACKEND=postgres the published build is a row in the database (retrieval/backends/postgres.py).
        backend = getattr(service, "backend", None)
        self.database_url: str | None = backend.url if backend is not None and backend.name == "postgres" else None
        self.root = Path(root) if root else service.index.directory.parent.parent  # <root>/builds/<build>
        self._served = service.index.directory
        self._refused: Path | None = None
        self.refused_reason: str | None = None
        self.swaps = 0
        self.last_swap_seconds: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one check at a time (the thread, or a test calling check_now)

    def start(self) -> None:
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="medkb-index-reloader", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_now()
            except Exception:  # never let the thread die: the next tick tries again
                log.exception("checking %s for a new build failed", self.root)

    def published(self) -> Path | None:
        from indexer.index_store import current_dir

        if self.database_url is not None:
            from retrieval.backends.postgres import published_build

            build = published_build(self.database_url)
            return Path("postgres") / build if build else None
        return current_dir(self.root)

    def _load(self, target: Path, old):
        from indexer.index_store import load_build

        if self.database_url is not None:
            from retrieval.backends.postgres import load_published

            return load_published(self.database_url, old.manifest.model, build_id=target.name, reuse=old.index)
        return load_build(target, old.manifest.model, reuse=old.index)

    def check_now(self) -> bool:
        """Swap to the published build if it is new and intact. True when a swap happened."""
        from indexer.index_store import IndexProblem

        with self._lock:
            target = self.published()
            if target is None or target == self._served or target == self._refused:
                return False
            old = self.state.search
            if old is None:
                return False
            started = time.perf_counter()
            try:
                index = self._load(target, old)
            except IndexProblem as exc:
                self._refused, self.refused_reason = target, str(exc)
                log.warning("%s", refusal_warning(target.name, self._served.name, str(exc), str(target)))
                return False
            new = old.over(index)
            new.warm()  # the speller and other per-build tables, here rather than in the first requests
            gone = weakref.ref(old.index)
            self.state.search = new  # the swap: one reference assignment
            self._served, self._refused, self.refused_reason = target, None, None
            self.swaps += 1
            self.last_swap_seconds = time.perf_counter() - started
            log.info("serving build %s (%d chunks), loaded in %.1f s", target.name, index.manifest.counts.chunks, self.last_swap_seconds)
            del old, new, index
        self._release(gone)
        return True

    def _release(self, gone: weakref.ref, wait: float = 30.0) -> None:
        """Once the old build's last request has ended, return its memory to the system. Reference
        counting frees it the moment that request lets go; a full collection runs once a second
        only while something still holds it (a collection over a large heap is not free)."""
        deadline = time.monotonic() + wait
        next_collect = time.monotonic() + 1.0
        while gone() is not None and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.05)
            if time.monotonic() >= next_collect:
                gc.collect()
                next_collect = time.monotonic() + 1.0
        gc.collect()
        _malloc_trim()
        if gone() is not None:
            log.warning("the previous build is still referenced %.0f s after the swap", wait)

    def status(self) -> dict:
        published = self.published()
        return {"published": published.name if published else None, "refused": self.refused_reason,
                "swaps": self.swaps, "checked_every_s": self.interval}

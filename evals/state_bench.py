"""Latency of the shared-state stores on each backend: what a follow-up costs in the
conversation store (append a turn, read the history) and what every search costs in the
review log (`version()`, the check that decides whether statuses are recomputed).

    python -m evals.state_bench [--database-url postgresql://...] [--n 500]

Without --database-url a throwaway PostgreSQL is started with pgserver (a test dependency).
Prints p50 and p99 in milliseconds per operation and backend, with the load average.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def percentiles(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(p50, p99) of `n` calls of `fn`, in milliseconds, after 20 warm-up calls."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.99) - 1)]


def run(url: str, n: int) -> list[tuple[str, str, float, float]]:
    """(backend, operation, p50 ms, p99 ms) for SQLite files in a temporary folder and the database at `url`."""
    from retrieval.conversations import ConversationStore
    from retrieval.reviews import ReviewStore

    folder = Path(tempfile.mkdtemp(prefix="medkb-state-bench-"))
    rows = []
    for backend, conversations_at, reviews_at in (("sqlite", folder / "c.sqlite", folder / "r.sqlite"), ("postgres", url, url)):
        conversations = ConversationStore(conversations_at, timeout=5)
        cid = conversations.append(None, "What is iron deficiency?", "What is iron deficiency?")
        reviews = ReviewStore(reviews_at)
        append = functools.partial(conversations.append, cid, "how is it treated?", "how is iron deficiency treated?")
        for operation, fn in (("conversation append", append), ("conversation history", functools.partial(conversations.history, cid)),
                              ("review log version (per search)", reviews.version)):
            rows.append((backend, operation, *percentiles(fn, n)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="an existing PostgreSQL database (its tables are created if missing)")
    parser.add_argument("--n", type=int, default=500, help="timed calls per operation")
    args = parser.parse_args()
    server = None
    url = args.database_url
    if url is None:
        import pgserver

        server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="medkb-state-bench-pg-")), cleanup_mode="stop")
        url = server.get_uri()
    try:
        print(f"load average {os.getloadavg()[0]:.1f} at start; {args.n} calls per operation")
        for backend, operation, p50, p99 in run(url, args.n):
            print(f"{backend:9s} {operation:32s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
        print(f"load average {os.getloadavg()[0]:.1f} at end")
    finally:
        from retrieval.stores.postgres import close_pools

        close_pools()
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()

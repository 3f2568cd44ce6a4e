"""`medkb bench --backends`: the embedded and the PostgreSQL backend measured side by side.

- medquad: one MedQuAD build (an index root written by `medkb index`), published into the
  database; for each backend: time to publish (database: copy + BM25 statistics + HNSW
  index), bytes per chunk (the build directory; the build's tables and indexes), latency of
  the dense list, the lexical list and the whole search (query vectors embedded once, ahead,
  so the model is not timed), and the dense list's recall@10 against exact search.
- synthetic: `n` clustered unit vectors (evals.bench.clustered_vectors, 1M by default) in
  FAISS (exact, flat) and in a pgvector table with an HNSW index: build time, bytes per
  vector, latency p50/p99 of a top-10 query, recall@10 against exact at several ef_search.

Latency is measured one query at a time from this process (the database on the same
machine, over its Unix socket), after one warm-up pass; the load average before each
measurement is recorded beside it (evals.bench.machine_load).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.bench import clustered_vectors, dir_bytes, machine_load, percentiles, rss_mb

EF_SEARCHES = (40, 100, 200, 400)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - started) * 1000


def database_bytes(url: str, build_id: str) -> int:
    """Bytes on disk of one database build: every table of its schema with indexes and TOAST."""
    import psycopg

    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE n.nspname = %s AND c.relkind = 'r'", (f"medkb_b_{build_id}",)).fetchone()[0])


def medquad_backends(index_root: Path, url: str, embedder, queries: list[str], log: Callable[[str], None], ef_search: int = 200) -> dict[str, Any]:
    """Both backends over the same MedQuAD build (see the module docstring)."""
    from indexer.embedding import ModelInfo
    from indexer.index_store import load_index
    from indexer.lexical import tokenize
    from retrieval.backends.embedded import EmbeddedBackend
    from retrieval.backends.postgres import PostgresBackend, PostgresStore, load_published
    from retrieval.search import SearchService

    out: dict[str, Any] = {"load": [machine_load("medquad backends: publish", log)]}
    gc.collect()
    before = rss_mb()
    local = load_index(index_root, ModelInfo.of(embedder))
    embedded_rss = rss_mb() - before
    n = len(local.chunks)
    log(f"  publishing {n:,} chunks into the database ...")
    started = time.perf_counter()
    with PostgresStore(url) as store:
        build_id = store.publish_index(local)
    publish_s = time.perf_counter() - started
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    remote = load_published(url, ModelInfo.of(embedder), build_id=build_id)
    replica_load_s = time.perf_counter() - started
    replica_rss = rss_mb() - before
    out["chunks"] = n
    # resident memory the build takes in a server process (RSS growth on loading it): all of it for
    # the embedded backend; for postgres what a replica keeps (chunks, articles, sections, term statistics)
    out["embedded"] = {"build_seconds_from_manifest": local.manifest.build.seconds, "bytes_per_chunk": round(dir_bytes(local.directory) / n),
                       "server_memory_bytes_per_chunk": round(embedded_rss * 2**20 / n)}
    out["postgres"] = {"publish_seconds": round(publish_s, 1), "replica_load_seconds": round(replica_load_s, 1),
                       "server_memory_bytes_per_chunk": round(replica_rss * 2**20 / n),
                       "bytes_per_chunk": round(database_bytes(url, build_id) / n), "ef_search": ef_search}
    log(f"  published in {publish_s:.1f} s; a replica reads it in {replica_load_s:.1f} s")
    vectors = embedder.encode_queries(queries)
    backends = {"embedded": EmbeddedBackend(local), "postgres": PostgresBackend.for_index(url, remote, ef_search=ef_search)}
    services = {"embedded": SearchService(local, embedder, backend=backends["embedded"]),
                "postgres": SearchService(remote, embedder, backend=backends["postgres"])}
    truth = [{i for i, _ in backends["embedded"].dense(v, 10)} for v in vectors]  # FAISS flat: exact
    for name, backend in backends.items():
        out["load"].append(machine_load(f"medquad backends: {name} search", log))
        service = services[name]
        for q, v in zip(queries, vectors):  # warm up: caches, connections, pages, lazily built tables; every query vector cached
            service.cache.put(" ".join(q.split()).lower(), v)
            backend.dense(v, 100)
            service.search(q, 10)
        dense_ms, lexical_ms, search_ms, hits = [], [], [], 0
        for q, v, exact in zip(queries, vectors, truth):
            found, ms = _timed(lambda v=v, b=backend: b.dense(v, 100))
            dense_ms.append(ms)
            hits += len(exact & {i for i, _ in found[:10]})
            lexical_ms.append(_timed(lambda q=q, b=backend: b.lexical(tokenize(q), 100))[1])
            search_ms.append(_timed(lambda q=q, s=service: s.search(q, 10))[1])
        if name == "postgres":  # the floor under every database call on this machine now: one trivial round trip
            with backend._pool.connection() as conn:
                out[name]["select_1_ms"] = percentiles([_timed(lambda c=conn: c.execute("SELECT 1").fetchone())[1] for _ in queries])
        out[name].update({"dense_top100_ms": percentiles(dense_ms), "lexical_top100_ms": percentiles(lexical_ms), "search_ms": percentiles(search_ms),
                          "dense_recall@10_vs_exact": round(hits / (10 * len(queries)), 4)})
        log(f"  {name}: dense p50 {out[name]['dense_top100_ms']['p50']} ms, lexical p50 {out[name]['lexical_top100_ms']['p50']} ms, "
            f"search p50 {out[name]['search_ms']['p50']} ms p99 {out[name]['search_ms']['p99']} ms, recall@10 {out[name]['dense_recall@10_vs_exact']}")
    backends["postgres"].close()
    return out


def synthetic_backends(url: str, n: int, dim: int, queries: int, log: Callable[[str], None], m: int = 16, ef_construction: int = 64,
                       maintenance_work_mem: str = "4GB") -> dict[str, Any]:
    """FAISS flat against pgvector HNSW over `n` clustered vectors (see the module docstring).
    The table medkb_synthetic in `url` is replaced."""
    import faiss
    import psycopg
    from pgvector.psycopg import register_vector

    out: dict[str, Any] = {"vectors": n, "dim": dim, "queries": queries, "hnsw": {"m": m, "ef_construction": ef_construction},
                           "load": [machine_load("synthetic backends: generate and FAISS", log)]}
    log(f"  generating {n:,} x {dim} clustered vectors ...")
    xb, xq, _ = clustered_vectors(n, dim, queries)
    faiss.omp_set_num_threads(1)  # as SearchService answers one query: one thread (retrieval/search.py)
    flat = faiss.IndexFlatIP(dim)
    _, add_ms = _timed(lambda: flat.add(xb))
    truth, lat = [], []
    for i in range(queries):
        (_, ids), ms = _timed(lambda i=i: flat.search(xq[i:i + 1], 10))
        lat.append(ms)
        truth.append(set(ids[0].tolist()))
    out["faiss_flat"] = {"build_seconds": round(add_ms / 1000, 2), "bytes_per_vector": dim * 4, "ms": percentiles(lat), "recall@10_vs_exact": 1.0,
                         "threads": faiss.omp_get_max_threads()}
    log(f"  FAISS flat: p50 {out['faiss_flat']['ms']['p50']} ms, p99 {out['faiss_flat']['ms']['p99']} ms")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS medkb_synthetic")
        conn.execute(f"CREATE TABLE medkb_synthetic (id int PRIMARY KEY, embedding vector({int(dim)}) NOT NULL)")
        out["load"].append(machine_load("synthetic backends: pgvector load and HNSW build", log))
        log("  copying the vectors into PostgreSQL ...")
        started = time.perf_counter()
        with conn.cursor().copy("COPY medkb_synthetic FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i in range(n):
                copy.write_row((i, xb[i]))
        copy_s = time.perf_counter() - started
        log(f"  copied in {copy_s:.0f} s; building the HNSW index (m={m}, ef_construction={ef_construction}) ...")
        conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX medkb_synthetic_hnsw ON medkb_synthetic USING hnsw (embedding vector_ip_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})")
        build_s = time.perf_counter() - started
        conn.execute("ANALYZE medkb_synthetic")
        table = conn.execute("SELECT pg_table_size('medkb_synthetic')").fetchone()[0]
        index = conn.execute("SELECT pg_relation_size('medkb_synthetic_hnsw')").fetchone()[0]
        out["pgvector_hnsw"] = {"copy_seconds": round(copy_s, 1), "index_build_seconds": round(build_s, 1), "table_bytes_per_vector": round(table / n),
                                "index_bytes_per_vector": round(index / n), "by_ef_search": []}
        log(f"  HNSW built in {build_s:.0f} s; {table / n:.0f} + {index / n:.0f} bytes per vector (table + index)")
        for ef in EF_SEARCHES:
            out["load"].append(machine_load(f"synthetic backends: pgvector ef_search={ef}", log))
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            for i in range(min(queries, 20)):  # warm-up
                conn.execute("SELECT id FROM medkb_synthetic ORDER BY embedding <#> %s LIMIT 10", (xq[i],)).fetchall()
            lat, hits = [], 0
            for i in range(queries):
                rows, ms = _timed(lambda i=i: conn.execute("SELECT id FROM medkb_synthetic ORDER BY embedding <#> %s LIMIT 10", (xq[i],)).fetchall())
                lat.append(ms)
                hits += len(truth[i] & {r[0] for r in rows})
            entry = {"ef_search": ef, "ms": percentiles(lat), "recall@10_vs_exact": round(hits / (10 * queries), 4)}
            out["pgvector_hnsw"]["by_ef_search"].append(entry)
            log(f"  pgvector ef_search={ef}: p50 {entry['ms']['p50']} ms, p99 {entry['ms']['p99']} ms, recall@10 {entry['recall@10_vs_exact']}")
    return out


def format_backends(results: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    lines = []
    mq = results.get("medquad")
    if mq:
        lines.append(f"MedQuAD, {mq['chunks']:,} chunks, embedded vs postgres (ef_search {mq['postgres']['ef_search']})")
        for name in ("embedded", "postgres"):
            e = mq[name]
            lines.append(f"  {name:<9} dense top100 p50 {e['dense_top100_ms']['p50']} p99 {e['dense_top100_ms']['p99']} ms | lexical top100 p50 "
                         f"{e['lexical_top100_ms']['p50']} p99 {e['lexical_top100_ms']['p99']} ms | search p50 {e['search_ms']['p50']} p99 {e['search_ms']['p99']} ms"
                         f" | recall@10 {e['dense_recall@10_vs_exact']} | {e['bytes_per_chunk']} bytes/chunk")
        if "select_1_ms" in mq["postgres"]:
            lines.append(f"  one database round trip (SELECT 1): p50 {mq['postgres']['select_1_ms']['p50']} p99 {mq['postgres']['select_1_ms']['p99']} ms")
        lines.append(f"  publish into the database {mq['postgres']['publish_seconds']} s; a replica loads it in {mq['postgres']['replica_load_seconds']} s")
        lines.append(f"  server memory per chunk: embedded {mq['embedded']['server_memory_bytes_per_chunk']} bytes, postgres replica "
                     f"{mq['postgres']['server_memory_bytes_per_chunk']} bytes")
    syn = results.get("synthetic")
    if syn:
        f, h = syn["faiss_flat"], syn["pgvector_hnsw"]
        lines.append(f"{syn['vectors']:,} synthetic {syn['dim']}-d vectors")
        lines.append(f"  FAISS flat (exact): p50 {f['ms']['p50']} p99 {f['ms']['p99']} ms, build {f['build_seconds']} s, {f['bytes_per_vector']} bytes/vector")
        lines.append(f"  pgvector HNSW m={syn['hnsw']['m']} ef_construction={syn['hnsw']['ef_construction']}: build {h['index_build_seconds']} s (+ copy {h['copy_seconds']} s), "
                     f"{h['table_bytes_per_vector']} + {h['index_bytes_per_vector']} bytes/vector (table + index)")
        for e in h["by_ef_search"]:
            lines.append(f"    ef_search={e['ef_search']}: p50 {e['ms']['p50']} p99 {e['ms']['p99']} ms, recall@10 {e['recall@10_vs_exact']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m evals.backend_bench`: the MedQuAD comparison on a build made with the test
    suite's bag-of-words embedder (tests/fakes.py) at the model's 384 dimensions, for a machine
    too busy to embed MedQuAD with the model: everything but the model and the vectors' meaning
    is measured (chunk text, BM25, vector bytes, HNSW over real-size vectors)."""
    import argparse
    import json
    import sys

    from evals.bench import REPO, machine, medquad_questions

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--index", type=Path, required=True, help="an index root built with FakeEmbedder(dim=--fake-dim)")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--fake-dim", type=int, default=384)
    parser.add_argument("--medquad-data", type=Path, default=REPO.parent / "shared" / "data" / "medquad")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-search", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from fakes import FakeEmbedder

    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    results = {"machine": machine(), "model": f"fake bag-of-words, {args.fake_dim} dimensions (tests/fakes.py)",
               "medquad": medquad_backends(args.index, args.database_url, FakeEmbedder(dim=args.fake_dim), medquad_questions(args.medquad_data, args.queries),
                                           log, ef_search=args.ef_search)}
    print(format_backends(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

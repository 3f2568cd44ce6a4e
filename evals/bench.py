"""`medkb bench`: speed and memory figures, printed as a table and written as JSON.

Sizes:
- default: the default corpus, built in this run;
- medquad: an existing MedQuAD index (built by `medkb index`), with build throughput
  measured on a sample of its articles in this run;
- synthetic: the vector search alone over 1M random unit vectors (flat and IVF);
- model: the encoder's own CPU cost (a query; 1,000 word pieces of passages) and the
  ceilings that cost alone puts on this machine: requests per second, and the time to embed
  a MedQuAD index's chunks and headings (with --medquad-index).

Build throughput is reported in chunks/s and as a ratio to the raw model encode rate on
the same texts, measured in the same run: how close the pipeline is to the model's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from evals.pipeline import machine
from evals.server_process import free_port, stop, wait_until_serving

REPO = Path(__file__).resolve().parent.parent


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    arr = np.asarray(values)
    return {f"p{p}": round(float(np.percentile(arr, p)), 3) for p in (50, 95, 99)}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def model_floor(embedder, queries: list[str], passages: list[str], cores: int, target_rps: float = 200.0,
                corpus_texts: list[str] | None = None, clock: Callable[[], float] = time.process_time) -> dict[str, Any]:
    """What the model alone costs and allows on this machine: CPU ms per query (one at a time,
    and in batches of 8 as the server's batcher may send them), CPU ms per 1,000 word pieces of
    `passages` (batches of 8 on one model call at a time, the build's per-call setting), and
    the ceilings those put on `cores` cores: requests/s if a request did nothing but embed its
    query; CPU ms per request left for everything else at `target_rps` (issue 16's 200); and,
    when `corpus_texts` is given (the texts a build embeds: chunks and section headings), the
    build's wall seconds if the model were the only cost and every core ran it. Word pieces
    are counted with the [CLS]/[SEP] markers. `clock`: CPU seconds of this process (every
    thread). Raises ValueError for no queries or passages."""

    def cpu_ms(run: Callable[[], object]) -> float:
        started = clock()
        run()
        return (clock() - started) * 1000

    if not queries or not passages:
        raise ValueError("model_floor needs at least one query and one passage")
    threads = getattr(embedder, "document_threads", None)
    try:
        if threads is not None:
            embedder.document_threads = 1
        embedder.encode_queries(queries[:8])  # warm up
        one = cpu_ms(lambda: [embedder.encode_queries([q]) for q in queries]) / len(queries)
        eight = cpu_ms(lambda: [embedder.encode_queries(queries[i:i + 8]) for i in range(0, len(queries), 8)]) / len(queries)
        pieces = sum(embedder.count_tokens(passages)) + 2 * len(passages)
        per_thousand = cpu_ms(lambda: embedder.encode_documents(passages, batch_size=8)) * 1000 / pieces
    finally:
        if threads is not None:
            embedder.document_threads = threads
    query_ms = min(one, eight)
    out: dict[str, Any] = {
        "cores": cores, "queries": len(queries), "passages": len(passages), "passage_word_pieces": pieces,
        "query_cpu_ms": round(one, 2), "query_cpu_ms_batched_8": round(eight, 2),
        "passage_cpu_ms_per_1000_word_pieces": round(per_thousand, 1),
        "model_only_requests_per_s": round(cores * 1000 / query_ms, 1),
        "target_requests_per_s": target_rps,
        "cpu_ms_per_request_at_target": round(cores * 1000 / target_rps, 2),
        "cpu_ms_left_at_target": round(cores * 1000 / target_rps - query_ms, 2),
    }
    if corpus_texts:
        total = sum(embedder.count_tokens(corpus_texts)) + 2 * len(corpus_texts)
        out["corpus_texts"] = len(corpus_texts)
        out["corpus_word_pieces"] = total
        out["corpus_embed_floor_seconds"] = round(total * per_thousand / 1000 / 1000 / cores, 1)
    return out


def build_throughput(corpus_dirs: list[Path], embedder, root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Pipeline rate (parse + chunk + embed + write + publish into `root`) against the raw
    encode rate on the same texts, both with the model calls at once that `medkb index` runs
    (MEDKB_BUILD_THREADS; an ONNX encoder's `document_threads`, put back afterwards)."""
    from indexer.articles import load_corpus
    from indexer.build import build_index
    from indexer.chunking import chunk_article
    from medkb.settings import Settings

    serving_threads = getattr(embedder, "document_threads", None)
    threads = Settings.from_env().document_threads() if serving_threads is not None else None
    try:
        if threads is not None:
            embedder.document_threads = threads
        started = time.perf_counter()
        report = build_index(corpus_dirs, root, embedder)
        pipeline_s = time.perf_counter() - started
        index_bytes = dir_bytes(report.directory)
        texts = [c.embed_text for a in load_corpus(corpus_dirs).articles for c in chunk_article(a, embedder.count_tokens)]
        started = time.perf_counter()
        embedder.encode_documents(texts)
        raw_s = time.perf_counter() - started
    finally:
        if threads is not None:
            embedder.document_threads = serving_threads
    out = {
        "document_threads": threads,
        "articles": report.articles,
        "chunks": report.chunks,
        "pipeline_seconds": round(pipeline_s, 3),
        "pipeline_chunks_per_s": round(report.chunks / pipeline_s, 2),
        "raw_encode_seconds": round(raw_s, 3),
        "raw_encode_chunks_per_s": round(len(texts) / raw_s, 2),
        # Three significant figures: with a very fast encoder (the tests' fake one) the ratio is tiny, not zero.
        "ratio_to_raw_encode": float(f"{(report.chunks / pipeline_s) / (len(texts) / raw_s):.3g}"),
        "index_bytes_per_chunk": round(index_bytes / max(report.chunks, 1)),
    }
    how = f"{threads} model calls at once" if threads else "torch's own threads"
    log(f"  build ({how}): {out['pipeline_chunks_per_s']} chunks/s, raw encode {out['raw_encode_chunks_per_s']} chunks/s (ratio {out['ratio_to_raw_encode']})")
    return out


def in_process_latency(service, queries: list[str], k: int = 10) -> dict[str, Any]:
    """Latency of service.search: first with an empty query cache (model runs), then cached."""
    queries = list(dict.fromkeys(queries))  # distinct, so "uncached" really runs the model each time
    service.cache = type(service.cache)(service.cache.size)
    service.search("warm up the model", k)
    cold, warm = [], []
    for q in queries:
        t = time.perf_counter()
        service.search(q, k)
        cold.append((time.perf_counter() - t) * 1000)
    for q in queries:
        t = time.perf_counter()
        service.search(q, k)
        warm.append((time.perf_counter() - t) * 1000)
    return {"queries": len(queries), "uncached_ms": percentiles(cold), "cached_ms": percentiles(warm)}


async def _load(base: str, queries: list[str], concurrency: int, requests: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))

    async def worker() -> None:
        # Each simulated client has its own connection, as each clinician's browser does. (One
        # httpx client shared by 32 tasks adds seconds-long waits of its own to a few requests.)
        nonlocal errors
        async with httpx.AsyncClient(timeout=60) as client:
            for i in counter:
                t = time.perf_counter()
                r = await client.get(f"{base}/api/search", params={"q": queries[i % len(queries)], "k": 10})
                latencies.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 200

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    # The clients run on the same cores as the server: their CPU share says how much of the
    # machine the figure leaves to the server.
    return {"concurrency": concurrency, "requests": requests, "errors": errors, "requests_per_s": round(requests / elapsed, 1),
            "client_cpu_share": round(cpu / elapsed, 2), **{f"{k}_ms": v for k, v in percentiles(latencies).items()}}


def _tree_sum(pid: int, measure: Callable[[int], float]) -> float:
    """`measure` summed over process `pid` and its children (a server's worker processes, from
    /proc); a child that exits meanwhile counts as 0."""
    total = measure(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += measure(int(child))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def tree_rss_mb(pid: int) -> float:
    """Resident MB of process `pid` and its children (a server's worker processes), from /proc."""
    return _tree_sum(pid, rss_mb)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its children (a server's
    worker processes), from /proc/<pid>/stat (fields 14 and 15, in clock ticks)."""
    return _tree_sum(pid, _cpu_seconds)


def serving_processes(base: str, workers: int, timeout: float = 180) -> set[int]:
    """Wait until `workers` distinct server processes have answered `/healthz` (each request
    on a new connection, so that any worker may accept it); their process ids. Raises
    TimeoutError naming how many answered."""
    import httpx

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(seen)} of {workers} server processes answered {base}/healthz within {timeout:.0f} s")
        try:
            with httpx.Client(timeout=5) as client:
                seen.add(int(client.get(f"{base}/healthz").json().get("process", 0)))
        except (httpx.HTTPError, ValueError):
            time.sleep(0.3)
    return seen


def http_latency(index_dir: Path, queries: list[str], requests: int, log: Callable[[str], None], query_cache: bool = True,
                 workers: int = 1) -> dict[str, Any]:
    """Latency and throughput against `medkb serve --workers N` under uvicorn with 1, 8 and 32
    concurrent clients, measured once every worker answers. `query_cache=False` serves with
    MEDKB_QUERY_CACHE=0, so every request runs the model (the figure without the LRU cache of
    query vectors). RSS is the server's with its workers. The load comes from this process (httpx),
    on the same cores as the server."""
    port = free_port()
    env = dict(os.environ, **({} if query_cache else {"MEDKB_QUERY_CACHE": "0"}))
    # Absolute: the server starts in the repository, the index was named from wherever this runs.
    proc = subprocess.Popen([sys.executable, "-m", "medkb.cli", "serve", "--index-dir", str(Path(index_dir).resolve()), "--port", str(port), "--log-level", "warning",
                             "--workers", str(workers)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, {"server": (proc, lambda: proc.stderr.read().decode(errors="replace"))}, timeout=180)
        serving_processes(base, workers)
        rss_idle = tree_rss_mb(proc.pid)
        runs = []
        distinct = list(dict.fromkeys(queries))
        for level, concurrency in enumerate((1, 8, 32)):
            # Each level starts on fresh queries so the query cache does not flatter later levels;
            # when the pool is smaller than the requests, queries repeat and hit the cache.
            batch = [distinct[(level * requests + i) % len(distinct)] for i in range(requests)]
            server_cpu = tree_cpu_seconds(proc.pid)
            runs.append(asyncio.run(_load(base, batch, concurrency, requests)))
            server_cpu = tree_cpu_seconds(proc.pid) - server_cpu
            r = runs[-1]
            r["distinct_queries"] = len(set(batch))
            # What each request cost the server, and how many cores it kept busy: with every core
            # busy, requests per second can only rise by making a request cheaper.
            r["server_cpu_ms_per_request"] = round(server_cpu * 1000 / requests, 2)
            r["server_cores_busy"] = round(server_cpu * r["requests_per_s"] / requests, 2)
            log(f"  http c={concurrency} (query cache {'on' if query_cache else 'off'}): {r['requests_per_s']} req/s, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, "
                f"errors {r['errors']}; the server used {r['server_cpu_ms_per_request']} ms of CPU a request, {r['server_cores_busy']} cores; the clients {r['client_cpu_share']} of a core")
        return {"runs": runs, "query_cache": query_cache, "workers": workers, "server_rss_mb_idle": round(rss_idle, 1),
                "server_rss_mb_after_load": round(tree_rss_mb(proc.pid), 1)}
    finally:
        stop(proc)


def clustered_vectors(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """`n` unit vectors (n, dim) drawn around 2,000 random topic centres, `queries` perturbed
    copies of stored vectors (queries, dim), and the generator (for further draws); see
    `synthetic_vectors` for why clustered."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    xb = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32) * (1.3 / np.sqrt(dim))
        xb[start : start + m] = centres[rng.integers(0, len(centres), m)] + noise
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    picks = rng.integers(0, n, queries)
    xq = xb[picks] + rng.standard_normal((queries, dim), dtype=np.float32) * (0.8 / np.sqrt(dim))
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    return xb, xq, rng


def synthetic_vectors(n: int, dim: int, queries: int, log: Callable[[str], None], seed: int = 0) -> dict[str, Any]:
    """FAISS alone over `n` synthetic unit vectors: exact flat search, and IVF with its recall against flat.

    The vectors are drawn around 2,000 random topic centres (cosine to their centre about
    0.6), and queries are perturbed copies of stored vectors, so the data has the clustered
    shape of real sentence embeddings; uniformly random vectors would be a worst case that
    no approximate index handles and no corpus looks like.
    """
    import faiss

    log(f"  generating {n:,} x {dim} clustered vectors ...")
    xb, xq, rng = clustered_vectors(n, dim, queries, seed)
    out: dict[str, Any] = {"vectors": n, "dim": dim, "queries": queries, "threads": faiss.omp_get_max_threads()}

    flat = faiss.IndexFlatIP(dim)
    t = time.perf_counter()
    flat.add(xb)
    out["flat_add_seconds"] = round(time.perf_counter() - t, 2)
    lat = []
    truth = []
    for i in range(queries):
        t = time.perf_counter()
        _, ids = flat.search(xq[i : i + 1], 10)
        lat.append((time.perf_counter() - t) * 1000)
        truth.append(set(ids[0]))
    out["flat_ms"] = percentiles(lat)
    out["flat_bytes_per_vector"] = dim * 4
    log(f"  flat: p50 {out['flat_ms']['p50']} ms per query")

    nlist = min(4096, max(16, int(4 * np.sqrt(n))))  # the usual 4*sqrt(n) lists, capped
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    ivf.train(xb[rng.choice(n, size=min(n, 40 * nlist), replace=False)])
    ivf.add(xb)
    out["ivf_build_seconds"] = round(time.perf_counter() - t, 1)
    out["ivf"] = []
    for nprobe in (16, 64):
        ivf.nprobe = nprobe
        lat, hits = [], 0
        for i in range(queries):
            t = time.perf_counter()
            _, ids = ivf.search(xq[i : i + 1], 10)
            lat.append((time.perf_counter() - t) * 1000)
            hits += len(truth[i] & set(ids[0]))
        out["ivf"].append({"nlist": nlist, "nprobe": nprobe, "ms": percentiles(lat), "recall@10_vs_flat": round(hits / (10 * queries), 3)})
        log(f"  ivf nprobe={nprobe}: p50 {out['ivf'][-1]['ms']['p50']} ms, recall@10 vs flat {out['ivf'][-1]['recall@10_vs_flat']}")
    del xb, flat, ivf
    gc.collect()
    return out


def sample_medquad_corpus(corpus: Path, n: int, out: Path) -> Path:
    """A deterministic sample of `n` imported articles, copied for a build-throughput run."""
    files = sorted(corpus.rglob("*.md"))
    random.Random(0).shuffle(files)
    out.mkdir(parents=True, exist_ok=True)
    for f in files[:n]:
        shutil.copy(f, out / f.name)
    return out


def gold_queries() -> list[str]:
    queries = []
    for path in sorted((REPO / "evals" / "gold").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                queries.append(json.loads(line)["query"])
    return queries


def medquad_questions(medquad_dir: Path, n: int) -> list[str]:
    """`n` distinct MedQuAD questions from files sampled across every subset (deterministic)."""
    import re

    files = sorted(medquad_dir.rglob("*.xml"))
    random.Random(0).shuffle(files)
    questions: dict[str, None] = {}
    for path in files:
        for q in re.findall(r"<Question[^>]*>(.*?)</Question>", path.read_text(encoding="utf-8", errors="replace"), flags=re.S):
            questions.setdefault(" ".join(q.split()), None)
        if len(questions) >= n:
            break
    return list(questions)[:n]


def format_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    cpu = f"{m['cpu_model']} ({' '.join(m['cpu_flags']) or 'no AVX2 or later'})" if m.get("cpu_model") else "unknown CPU"
    lines = [f"medkb bench  ({m['cpus']} cpus, {cpu}, {m['platform']}, python {m['python']})", ""]
    head = f"{'size':<10} {'chunks':>8} {'build ch/s':>10} {'vs raw':>7} {'search p50/p95/p99 ms (uncached)':>34} {'cached p50':>10} {'B/chunk':>8} {'RSS MB':>7}"
    lines += [head, "-" * len(head)]
    for name in ("default", "medquad"):
        r = results.get(name)
        if not r:
            continue
        b, s = r.get("build", {}), r["search"]["uncached_ms"]
        lines.append(f"{name:<10} {r['chunks']:>8} {b.get('pipeline_chunks_per_s', '-'):>10} {b.get('ratio_to_raw_encode', '-'):>7} "
                     f"{s['p50']:>12} / {s['p95']} / {s['p99']:<12} {r['search']['cached_ms']['p50']:>10} {r['index_bytes_per_chunk']:>8} {r.get('http', {}).get('server_rss_mb_after_load', '-'):>7}")
    for name in ("default", "medquad"):
        b, c = results.get(name, {}).get("build"), results.get(name, {}).get("build_compared")
        if b and c:
            lines.append("")
            lines.append(f"build, {name} sample: {b['pipeline_chunks_per_s']} chunks/s with {results['settings'].get('encoder')}, "
                         f"{c['pipeline_chunks_per_s']} with {c['encoder']} (x{results[name]['build_speedup']})")
    for name, kind in (("default", "http_no_cache"), ("medquad", "http_no_cache"), ("default", "http"), ("medquad", "http")):
        r = results.get(name, {}).get(kind)
        if r:
            lines.append("")
            lines.append(f"HTTP /api/search, {name}, query cache {'on' if r.get('query_cache', True) else 'off (the model runs for every request)'} "
                         f"({r.get('workers', 1)} server process{'es' if r.get('workers', 1) > 1 else ''}; {r['runs'][0]['requests']} requests per level; server RSS {r['server_rss_mb_idle']} MB idle, {r['server_rss_mb_after_load']} MB after load)")
            for run in r["runs"]:
                lines.append(f"  {run['concurrency']:>2} clients: {run['requests_per_s']:>7} req/s  p50 {run['p50_ms']:>8} ms  p95 {run['p95_ms']:>8} ms  p99 {run['p99_ms']:>8} ms  errors {run['errors']}  "
                             f"({run.get('distinct_queries', '?')} distinct queries; server {run.get('server_cpu_ms_per_request', '?')} ms CPU a request, "
                             f"{run.get('server_cores_busy', '?')} cores; clients {run.get('client_cpu_share', '?')} of a core)")
    fresh = results.get("fresh")
    if fresh:
        lines.append("")
        lines.append(f"fresh clone to first answer (make serve, warm pip cache): {fresh['first_answer_seconds']} s "
                     f"(clone {fresh['clone_seconds']} s, install done at {fresh.get('install_seconds')} s, index at {fresh.get('index_seconds')} s, "
                     f"/healthz at {fresh['healthz_seconds']} s)")
    imp = results.get("import")
    if imp:
        lines.append("")
        lines.append(f"whole MedQuAD, XML to published index ({imp['articles']} articles, {imp['chunks']} chunks, encoder {imp['encoder']} {imp['precision']})")
        for step in ("import", "index"):
            e = imp[step]
            lines.append(f"  {step:<7} {e['seconds']:>8.1f} s  ({e['cpu_seconds']} s CPU; load {e['load']['load_1m']} before)")
        lines.append(f"  total   {imp['total_seconds']:>8.1f} s  ({imp['total_seconds'] / 60:.1f} min); index {imp['chunks_per_s']} chunks/s")
    floor = results.get("model")
    if floor:
        lines.append("")
        lines.append(f"the model alone ({floor['queries']} queries, {floor['passages']} passages; CPU time, one model call at a time)")
        lines.append(f"  a query: {floor['query_cpu_ms']} ms CPU ({floor['query_cpu_ms_batched_8']} ms each in batches of 8); passages: "
                     f"{floor['passage_cpu_ms_per_1000_word_pieces']} ms CPU per 1,000 word pieces")
        lines.append(f"  on {floor['cores']} cores: at most {floor['model_only_requests_per_s']} req/s if a request only embedded its query; "
                     f"at {floor['target_requests_per_s']:g} req/s a request may use {floor['cpu_ms_per_request_at_target']} ms CPU, "
                     f"{floor['cpu_ms_left_at_target']} ms after its query's embedding")
        if "corpus_embed_floor_seconds" in floor:
            lines.append(f"  embedding the MedQuAD index's {floor['corpus_texts']:,} chunks and headings ({floor['corpus_word_pieces']:,} word pieces) "
                         f"takes at least {floor['corpus_embed_floor_seconds']} s ({floor['corpus_embed_floor_seconds'] / 60:.1f} min) on every core")
    syn = results.get("synthetic")
    if syn:
        lines.append("")
        lines.append(f"vector search alone, {syn['vectors']:,} clustered synthetic {syn['dim']}-d vectors, {syn['queries']} queries, {syn['threads']} FAISS threads")
        lines.append(f"  flat (exact): p50 {syn['flat_ms']['p50']} ms  p95 {syn['flat_ms']['p95']} ms  p99 {syn['flat_ms']['p99']} ms  {syn['flat_bytes_per_vector']} B/vector")
        for ivf in syn["ivf"]:
            lines.append(f"  IVF{ivf['nlist']},Flat nprobe={ivf['nprobe']}: p50 {ivf['ms']['p50']} ms  p95 {ivf['ms']['p95']} ms  recall@10 vs exact {ivf['recall@10_vs_flat']} (build {syn['ivf_build_seconds']} s)")
    loads = results.get("load", [])
    if loads:
        lines.append("")
        lines.append("load average (1/5/15 min) before each measurement: " + "; ".join(f"{e['measurement']} {e['load_1m']}/{e['load_5m']}/{e['load_15m']}"
                                                                                     + (f" (after {e['settled_s']:.0f} s)" if e.get("settled_s") else "") for e in loads))
    busy = [entry for entry in results.get("load", []) if entry["busy"]]
    if busy:
        lines.append("")
        lines.append("WARNING: the machine was busy during " + ", ".join(f"{e['measurement']} (load {e['load_1m']} on {e['cpus']} cpus)" for e in busy)
                     + "; those figures are noisy, not a regression.")
    return "\n".join(lines)


BUSY_LOAD_PER_CPU = 0.5  # a 1-minute load average above this per core means other work shared the machine


def machine_load(label: str, log: Callable[[str], None], settle: float = 0.0, *, poll: float = 5.0,
                 getloadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The 1/5/15-minute load averages (os.getloadavg) just before a measurement, and whether
    the machine was busy: a figure taken on a busy machine is noisy, not a regression.

    `settle` (seconds, 0: none) first waits, polling every `poll` seconds (the kernel updates
    the averages every 5 s), until the 1-minute average is at or below BUSY_LOAD_PER_CPU per
    core: the 1-minute average decays with a 60 s time constant, so the load this bench put on
    the machine a moment ago (an HTTP run at 8 and 32 clients) would otherwise mark the next
    measurement busy although nothing else is running. The seconds waited are recorded
    (`settled_s`); a machine still busy after `settle` is someone else's work and is reported."""
    cpus = os.cpu_count() or 1
    waited = 0.0
    one, five, fifteen = getloadavg()
    while one / cpus > BUSY_LOAD_PER_CPU and waited < settle:
        step = min(poll, settle - waited)
        sleep(step)
        waited += step
        one, five, fifteen = getloadavg()
    busy = one / cpus > BUSY_LOAD_PER_CPU
    if waited:
        log(f"  waited {waited:.0f} s for the load average to settle before '{label}'")
    if busy:
        log(f"  warning: load average {one:.2f} on {cpus} cpus before '{label}': the machine was busy, so this figure is noisy")
    return {"measurement": label, "load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2), "cpus": cpus,
            "busy": busy, "settled_s": round(waited, 1)}


def _timed_process(command: list[str], label: str, log: Callable[[str], None], env: dict[str, str] | None = None,
                   settle: float = 0.0) -> dict[str, Any]:
    """One medkb process run to completion: wall and CPU seconds (children's rusage), and the
    load average just before. Raises RuntimeError with the end of its stderr when it fails."""
    import resource

    load = machine_load(label, log, settle)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=7200)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{label} failed: {out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"measurement": label, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "load": load, "stdout_tail": out.stdout[-1500:]}


def import_and_index(medquad_data: Path, corpus_out: Path, index_dir: Path, log: Callable[[str], None], settle: float = 0.0) -> dict[str, Any]:
    """The whole MedQuAD collection from its XML to a published index, as a user would do it: `medkb
    import medquad` then `medkb index` (fresh build cache, so every chunk is embedded, with the
    MEDKB_ENCODER of this process), each a real process timed in wall and CPU seconds."""
    cli = [sys.executable, "-m", "medkb.cli"]
    env = dict(os.environ, MEDKB_BUILD_CACHE=str(index_dir.parent / f"{index_dir.name}-build-cache"))
    imported = _timed_process([*cli, "import", "medquad", str(medquad_data), "--out", str(corpus_out), "--quiet"], "medquad import", log, env, settle)
    log(f"  import: {imported['seconds']} s ({imported['cpu_seconds']} s CPU)")
    indexed = _timed_process([*cli, "index", str(corpus_out), "--index-dir", str(index_dir)], "medquad index", log, env, settle)
    manifest = json.loads((index_dir / "current" / "manifest.json").read_text())
    chunks = manifest["counts"]["chunks"]
    log(f"  index: {indexed['seconds']} s ({indexed['cpu_seconds']} s CPU), {chunks} chunks, {chunks / indexed['seconds']:.1f} chunks/s")
    total = imported["seconds"] + indexed["seconds"]
    log(f"  import + index: {total:.1f} s ({total / 60:.1f} min)")
    return {"import": imported, "index": indexed, "articles": manifest["counts"]["articles"], "chunks": chunks,
            "chunks_per_s": round(chunks / indexed["seconds"], 1), "total_seconds": round(total, 1), "encoder": manifest["model"].get("encoder", "torch"),
            "precision": manifest["model"].get("precision", "fp32"), "index_dir": str(index_dir)}


def run_bench(sizes: list[str], embedder, log: Callable[[str], None], *, corpus_dirs: list[Path], medquad_index: Path | None,
              medquad_corpus: Path | None, medquad_data: Path | None, queries: int, http_requests: int, vectors: int,
              build_sample: int, http: bool, workdir: Path, compare_encoder: str | None = None, workers: int = 1,
              onnx_dir: Path | None = None, settle: float = 0.0) -> dict[str, Any]:
    """Every measurement of `sizes` (default, medquad, synthetic, import, fresh), each preceded by
    the machine's load average (after waiting up to `settle` seconds for it to fall: machine_load). `compare_encoder` (e.g. torch) also builds the MedQuAD sample with
    that encoder, for the build speed-up in the same run."""
    from indexer.embedding import ModelInfo, load_embedder
    from indexer.index_store import load_index
    from retrieval.search import SearchService

    results: dict[str, Any] = {"machine": machine(), "settings": {"sizes": sizes, "queries": queries, "http_requests": http_requests,
                                                                  "vectors": vectors, "build_sample": build_sample, "torch_threads": _torch_threads(),
                                                                  "encoder": ModelInfo.of(embedder).setting, "compare_encoder": compare_encoder,
                                                                  "server_workers": workers}}
    loads: list[dict[str, Any]] = []
    results["load"] = loads
    if "import" in sizes:
        if not medquad_data or not medquad_data.exists():
            log("import: skipped (no MedQuAD XML: pass --medquad-data)")
        else:
            log("import: the whole MedQuAD collection, XML to published index")
            # The index lands at --medquad-index when nothing is there yet, so the medquad size
            # below measures search over it; otherwise in the run's temporary folder.
            target = medquad_index if medquad_index and not medquad_index.exists() else workdir / "medquad-full-index"
            results["import"] = import_and_index(medquad_data, workdir / "medquad-full-corpus", target, log, settle)
            loads.extend(results["import"][step]["load"] for step in ("import", "index"))
    if "default" in sizes:
        log("default corpus")
        loads.append(machine_load("default: build and search", log, settle))
        root = workdir / "default-index"
        build = build_throughput(corpus_dirs, embedder, root, log)
        service = SearchService(load_index(root, ModelInfo.of(embedder)), embedder)
        qs = (gold_queries() or [c.article_title for c in service.index.chunks])[:queries]
        results["default"] = {"chunks": build["chunks"], "build": build, "index_bytes_per_chunk": build["index_bytes_per_chunk"],
                              "search": in_process_latency(service, qs)}
        log(f"  search p50 {results['default']['search']['uncached_ms']['p50']} ms uncached, {results['default']['search']['cached_ms']['p50']} ms cached")
        if http:
            loads.append(machine_load("default: HTTP, no query cache", log, settle))
            results["default"]["http_no_cache"] = http_latency(root, qs, http_requests, log, query_cache=False, workers=workers)
            loads.append(machine_load("default: HTTP", log, settle))
            results["default"]["http"] = http_latency(root, qs, http_requests, log, workers=workers)
    if "medquad" in sizes:
        if not medquad_index or not (medquad_index / "current").exists():
            log("medquad: skipped (no index: import and index MedQuAD first, then pass --medquad-index)")
        else:
            log("medquad")
            loads.append(machine_load("medquad: search and build", log, settle))
            index = load_index(medquad_index, ModelInfo.of(embedder))
            service = SearchService(index, embedder)
            pool = medquad_questions(medquad_data, queries + 3 * http_requests) if medquad_data and medquad_data.exists() else [c.article_title for c in index.chunks]
            qs = pool[:queries]
            entry: dict[str, Any] = {"chunks": len(index.chunks), "index_bytes_per_chunk": round(dir_bytes(index.directory) / max(len(index.chunks), 1)),
                                     "full_build_from_manifest": asdict(index.manifest.build), "search": in_process_latency(service, qs)}
            log(f"  search p50 {entry['search']['uncached_ms']['p50']} ms uncached, {entry['search']['cached_ms']['p50']} ms cached")
            if medquad_corpus and medquad_corpus.exists() and build_sample:
                sample = sample_medquad_corpus(medquad_corpus, build_sample, workdir / "medquad-sample")
                entry["build"] = {"sample_articles": build_sample, **build_throughput([sample], embedder, workdir / "medquad-sample-index", log)}
                if compare_encoder:
                    loads.append(machine_load(f"medquad: build with {compare_encoder}", log, settle))
                    other = load_embedder(embedder_dir(embedder), compare_encoder, onnx_dir=onnx_dir)
                    log(f"  the same sample with the {compare_encoder} encoder:")
                    entry["build_compared"] = {"encoder": compare_encoder, "sample_articles": build_sample,
                                               **build_throughput([sample], other, workdir / "medquad-sample-index-compared", log)}
                    entry["build_speedup"] = round(entry["build"]["pipeline_chunks_per_s"] / entry["build_compared"]["pipeline_chunks_per_s"], 2)
                    log(f"  build speed-up over {compare_encoder}: x{entry['build_speedup']}")
                    del other
                    gc.collect()
            del service
            gc.collect()
            if http:
                # First with the query cache off (the model runs for every request), then with it on
                # (the server's default; each level still starts on fresh queries).
                loads.append(machine_load("medquad: HTTP, no query cache", log, settle))
                entry["http_no_cache"] = http_latency(medquad_index, pool[queries:] or qs, http_requests, log, query_cache=False, workers=workers)
                loads.append(machine_load("medquad: HTTP", log, settle))
                entry["http"] = http_latency(medquad_index, pool[queries:] or qs, http_requests, log, workers=workers)
            results["medquad"] = entry
    if "fresh" in sizes:
        log("fresh clone to first answer with `make serve`")
        loads.append(machine_load("fresh clone: make serve", log, settle))
        results["fresh"] = fresh_clone_to_answer(workdir / "fresh", log)
    if "model" in sizes:
        log("model: the encoder's own cost, and the ceilings it sets")
        loads.append(machine_load("model: encoder cost", log, settle))
        results["model"] = _model_size(embedder, medquad_index, medquad_data, corpus_dirs, queries, log)
    if "synthetic" in sizes:
        log("synthetic vectors")
        loads.append(machine_load("synthetic vectors", log, settle))
        results["synthetic"] = synthetic_vectors(vectors, embedder.dim, min(queries, 200), log)
    return results


def _model_size(embedder, medquad_index: Path | None, medquad_data: Path | None, corpus_dirs: list[Path], queries: int,
                log: Callable[[str], None]) -> dict[str, Any]:
    """`model_floor` on MedQuAD questions and chunks (the default corpus's when no MedQuAD
    index is given), with the MedQuAD index's chunks and headings (whichever encoder built it) as the build's texts."""
    from indexer.articles import load_corpus
    from indexer.build import section_heading_text
    from indexer.chunking import chunk_article
    from indexer.index_store import load_index

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    corpus_texts = None
    if medquad_index and (medquad_index / "current").exists():
        index = load_index(medquad_index)  # only its texts are read: an index of any encoder will do
        chunks = index.chunks
        headings = {c.section_id: section_heading_text(c.article_title, list(c.section_path)) for c in chunks}
        corpus_texts = [c.embed_text or c.text for c in chunks] + list(headings.values())
        passages = [c.embed_text or c.text for c in random.Random(0).sample(chunks, min(256, len(chunks)))]
        del index
    else:
        passages = [c.embed_text for a in load_corpus(corpus_dirs).articles for c in chunk_article(a, embedder.count_tokens)][:256]
    pool = medquad_questions(medquad_data, max(queries, 50)) if medquad_data and medquad_data.exists() else gold_queries()
    floor = model_floor(embedder, list(dict.fromkeys(pool))[:queries], passages, cores, corpus_texts=corpus_texts)
    log(f"  a query {floor['query_cpu_ms']} ms CPU ({floor['query_cpu_ms_batched_8']} in batches of 8); "
        f"{floor['passage_cpu_ms_per_1000_word_pieces']} ms CPU per 1,000 word pieces of passages")
    return floor


def embedder_dir(embedder) -> Path | None:
    """The model folder an embedder loaded from (None: the packaged one)."""
    return getattr(embedder, "model_dir", None)


def fresh_clone_to_answer(where: Path, log: Callable[[str], None], query: str = "iron deficiency anemia treatment",
                          timeout: float = 1800) -> dict[str, Any]:
    """`git clone` of this repository's HEAD, then `make serve` in it (its own .venv from the warm pip
    cache, the index built from corpus/ with the default encoder, any ONNX export made) until
    /api/search answers `query` with 200: seconds to clone, to /healthz and to the first answer.
    The whole process group is stopped afterwards. RuntimeError when it fails or times out."""
    import signal

    import httpx

    port = free_port()
    started = time.perf_counter()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(where)], check=True, timeout=300)
    cloned = time.perf_counter() - started
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDKB_", "VIRTUAL_ENV", "PYTHONPATH"))}
    log_file = where.parent / "fresh-make-serve.log"
    with open(log_file, "w") as out:
        proc = subprocess.Popen(["make", "serve", f"PORT={port}"], cwd=where, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    healthy = answered = None
    # make echoes each command as it starts it: the install ends when `medkb index` starts, the index when `medkb serve` does.
    markers = {"install_seconds": f"{Path('.venv') / 'bin' / 'medkb'} index", "index_seconds": f"{Path('.venv') / 'bin' / 'medkb'} serve"}
    stages: dict[str, float] = {}
    try:
        while answered is None:
            text = log_file.read_text(errors="replace")
            for name, marker in markers.items():
                if name not in stages and marker in text:
                    stages[name] = round(time.perf_counter() - started, 1)
            if proc.poll() is not None:
                raise RuntimeError(f"make serve exited ({proc.returncode}): {log_file.read_text()[-2000:]}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"no answer within {timeout:.0f} s: {log_file.read_text()[-2000:]}")
            try:
                if healthy is None and httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    healthy = time.perf_counter() - started
                if healthy is not None and httpx.get(f"{base}/api/search", params={"q": query}, timeout=30).status_code == 200:
                    answered = time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in log_file.read_text().splitlines() if line.startswith(("index", "indexed", "exporting", "quantizing", "  done", "serving"))]
    out = {"clone_seconds": round(cloned, 1), **stages, "healthz_seconds": round(healthy, 1), "first_answer_seconds": round(answered, 1), "log": lines[-12:]}
    log(f"  clone {out['clone_seconds']} s; install done at {stages.get('install_seconds')} s; index done at {stages.get('index_seconds')} s; "
        f"/healthz at {out['healthz_seconds']} s; first answer at {out['first_answer_seconds']} s (all from the start of the clone)")
    return out


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


# ---------------------------------------------------------------- medkb bench --live


_REUSED = re.compile(r"reused from cache\s+(\d+) of (\d+) files parsed before, (\d+) of (\d+) texts embedded before")
_TIME = re.compile(r"^\s+time\s+([\d.]+)s \((.*)\)$", re.M)
_CACHE = re.compile(r"^\s+build cache\s+([\d.]+)s of it(?: \((.*)\))?$", re.M)


def _index_run(cli: list[str], corpus: Path, root: Path, env: dict[str, str], label: str, log: Callable[[str], None]) -> dict[str, Any]:
    """One `medkb index` process: its wall time (interpreter, imports, a model load if the build
    needs one, the build) and the build's own figures from its report."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([*cli, "index", str(Path(corpus).resolve()), "--index-dir", str(Path(root).resolve())], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=7200)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode != 0:
        raise RuntimeError(f"medkb index failed ({label}): {out.stderr[-2000:]}")
    # CPU seconds do not grow when other work shares the machine; wall seconds do.
    entry: dict[str, Any] = {"measurement": label, "process_seconds": round(wall, 2), "process_cpu_seconds": round(cpu, 2)}
    reused = _REUSED.search(out.stdout)
    timing = _TIME.search(out.stdout)
    if reused:
        parsed_before, files, embedded_before, texts = map(int, reused.groups())
        entry.update(files=files, files_parsed=files - parsed_before, texts=texts, texts_embedded=texts - embedded_before)
    if timing:
        entry["build_seconds"] = float(timing.group(1))
        entry["stages"] = timing.group(2)
        loaded = re.search(r"model load ([\d.]+)s", timing.group(2))
        entry["model_load_seconds"] = float(loaded.group(1)) if loaded else None  # None: the build never loaded the model
    in_cache = _CACHE.search(out.stdout)
    if in_cache:
        entry["cache_seconds"] = float(in_cache.group(1))
        entry["cache_operations"] = in_cache.group(2) or ""
    entry["build"] = _published(root)
    log(f"  {label}: {entry['process_seconds']} s for the whole `medkb index` process ({entry['process_cpu_seconds']} s of CPU), build {entry.get('build_seconds')} s "
        f"({entry.get('files_parsed')} file(s) parsed, {entry.get('texts_embedded')} text(s) embedded; {entry.get('stages')}; "
        f"build cache {entry.get('cache_seconds')} s: {entry.get('cache_operations')})")
    return entry


def _published(root: Path) -> str | None:
    link = root / "current"
    return link.resolve().name if link.is_symlink() else None


def _edit_front_matter(path: Path) -> None:
    """Change the article's audience (patient or clinician -> both, both -> clinician) and add a
    YAML comment unique to this run (so that no build cache has seen the file's bytes): its record
    changes, none of its embedded texts do."""
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("\naudience: ")
    if not sep:
        raise ValueError(f"{path}: no audience line to edit")
    value, _, tail = rest.partition("\n")
    audience = "clinician" if value.strip() == "both" else "both"
    path.write_text(f"{head}{sep}{audience}\n# audience edited by medkb bench --live ({time.time_ns()})\n{tail}", encoding="utf-8")


def _edit_article(path: Path, n: int) -> None:
    """Append a short paragraph to the article's last section: its last chunk changes."""
    with open(path, "a", encoding="utf-8") as fh:
        # unique to this run, so that no build cache has seen the text before: the edit is embedded
        fh.write(f"\n\nEdited by medkb bench --live ({n}, {time.time_ns()}): this note checks that a changed article is served within seconds.\n")


async def _live_load(base: str, queries: list[str], clients: int, seconds: float, edits: list[Path], server_pid: int,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """`clients` closed-loop clients on /api/search for `seconds`, while `edits` are edited one by
    one at even intervals (a watching `medkb index` republishes each); after each swap the
    server's RSS is read."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    served: dict[str, int] = {}
    stop = asyncio.Event()
    counter = iter(range(10**9))

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60) as http:  # its own connection, as a user's browser has
            await searches(http)

    async def searches(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            i = next(counter)
            t = time.perf_counter()
            try:
                r = await http.get(f"{base}/api/search", params={"q": queries[i % len(queries)], "k": 10})
                ok = r.status_code == 200
                if ok:
                    build = r.json()["index"]["build"]
                    served[build] = served.get(build, 0) + 1
                else:
                    failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            latencies.append((time.perf_counter() - t) * 1000)

    async def health(http: httpx.AsyncClient) -> dict[str, Any]:
        return (await http.get(f"{base}/healthz")).json()

    swaps: list[dict[str, Any]] = []

    async def editor(http: httpx.AsyncClient) -> None:
        interval = seconds / (len(edits) + 1)
        for n, path in enumerate(edits, start=1):
            await asyncio.sleep(max(0.0, started + n * interval - time.perf_counter()))
            if swaps:  # the previous build's memory has had until now to be released
                swaps[-1]["server_rss_mb_before_next_edit"] = round(rss_mb(server_pid), 1)
            before = (await health(http))["build"]
            t = time.perf_counter()
            _edit_article(path, n)
            while True:
                h = await health(http)
                if h["build"] != before and h["build"] == h["published"]:
                    break
                if time.perf_counter() - t > 300:
                    raise RuntimeError(f"edit {n} was not served within 300 s")
                await asyncio.sleep(0.1)
            to_served = time.perf_counter() - t
            await asyncio.sleep(1.0)  # requests that started on the old build end; it is released
            swaps.append({"edit": n, "article": path.name, "edit_to_served_seconds": round(to_served, 2), "build": h["build"],
                          "server_rss_mb": round(rss_mb(server_pid), 1)})
            log(f"  swap {n}: {path.name} edited -> served by the server in {to_served:.1f} s; server RSS {swaps[-1]['server_rss_mb']} MB 1 s later")

    async with httpx.AsyncClient(timeout=60) as http:  # the editor's health checks
        rss_before = rss_mb(server_pid)
        started = time.perf_counter()
        workers = [asyncio.create_task(client()) for _ in range(clients)]
        try:
            await editor(http)
            await asyncio.sleep(max(0.0, started + seconds - time.perf_counter()))
            if swaps:
                swaps[-1]["server_rss_mb_before_next_edit"] = round(rss_mb(server_pid), 1)
        finally:
            stop.set()
            await asyncio.gather(*workers)
        elapsed = time.perf_counter() - started
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies), "failed": len(failures), "failures": failures[:10],
            "requests_per_s": round(len(latencies) / elapsed, 1), **{f"{k}_ms": v for k, v in percentiles(latencies).items()},
            "max_ms": round(max(latencies), 1) if latencies else 0.0, "builds_served": served, "swaps": swaps,
            "server_rss_mb_before": round(rss_before, 1), "server_rss_mb_after": round(rss_mb(server_pid), 1)}


def live_bench(corpus: Path, cache_dir: Path | None, workdir: Path, queries: list[str], log: Callable[[str], None], *, seconds: float = 60,
               clients: int = 8, builds: int = 5, fake_model: bool = False) -> dict[str, Any]:
    """Publish times after a one-article edit (new text), a one-article front-matter edit (no new
    text), a one-article delete and for an unchanged corpus
    (each a real `medkb index` process over a copy of `corpus`, with the build cache `cache_dir`);
    then a server under `clients` clients for `seconds` while `builds` edits are republished by a
    watching `medkb index --watch`: failed requests, latency, and server RSS after each swap.
    `fake_model` runs every process with the test suite's bag-of-words embedder instead of the
    model: everything but the model's own time is measured."""
    cli = [sys.executable, str(REPO / "tests" / "fake_model_cli.py")] if fake_model else [sys.executable, "-m", "medkb.cli"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), PYTHONUNBUFFERED="1",
               MEDKB_CONVERSATIONS_DB=str(workdir / "conversations.sqlite"), MEDKB_RELOAD_SECONDS="1")
    if cache_dir:
        env["MEDKB_BUILD_CACHE"] = str(cache_dir)
    copy, root = workdir / "corpus", workdir / "index"
    log(f"live: copying {corpus} ...")
    shutil.copytree(corpus, copy)
    files = sorted(copy.rglob("*.md"))
    out: dict[str, Any] = {"corpus": str(corpus), "articles_in_corpus": len(files), "cache": str(cache_dir) if cache_dir else None,
                           "model": "fake bag-of-words (tests/fakes.py)" if fake_model else "packaged all-MiniLM-L6-v2", "publish": []}
    out["publish"].append(_index_run(cli, copy, root, env, "first build of the copy (from the build cache)", log))
    out["publish"].append(_index_run(cli, copy, root, env, "unchanged corpus", log))
    _edit_article(files[len(files) // 2], 0)
    out["publish"].append(_index_run(cli, copy, root, env, "one-article edit", log))
    _edit_front_matter(files[2 * len(files) // 3])
    out["publish"].append(_index_run(cli, copy, root, env, "one-article front-matter edit", log))
    deleted = files[len(files) // 3]
    title = next((line.split(":", 1)[1].strip() for line in deleted.read_text(encoding="utf-8").splitlines() if line.startswith("title:")), deleted.stem)
    deleted.unlink()
    out["publish"].append(_index_run(cli, copy, root, env, "one-article delete", log))
    out["deleted_article"] = deleted.name

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    root, copy = Path(root).resolve(), Path(copy).resolve()  # the processes start in the repository
    server = subprocess.Popen([*cli, "serve", "--index-dir", str(root), "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "w"))
    watch_log = workdir / "watch.log"
    watcher = subprocess.Popen([*cli, "index", str(copy), "--index-dir", str(root), "--watch", "--if-stale"], cwd=REPO, env=env,
                               stdout=open(watch_log, "w"), stderr=subprocess.STDOUT)
    try:
        import httpx

        # the watcher says "model ready" once its model is loaded: an edit is then built at once
        wait_until_serving(base, {"server": (server, lambda: (workdir / "server.log").read_text(errors="replace")),
                                  "watcher": (watcher, lambda: watch_log.read_text(errors="replace"))},
                           timeout=600, ready=lambda: watch_log.exists() and "model ready" in watch_log.read_text(errors="replace"), poll_seconds=0.5)
        deleted_hits = httpx.get(f"{base}/api/search", params={"q": title, "k": 50}).json()["results"]
        out["deleted_article_served"] = any(r["article_id"] == deleted.stem for r in deleted_hits)  # imported articles' ids are their file names
        out["server_rss_mb_idle"] = round(rss_mb(server.pid), 1)
        step = max(1, len(files) // (builds + 1))
        edits = [f for f in files[step // 2 :: step] if f.exists()][:builds]
        log(f"live: {clients} clients for {seconds:.0f} s while {len(edits)} edits are republished by `medkb index --watch`")
        out["load"] = asyncio.run(_live_load(base, queries, clients, seconds, edits, server.pid, log))
        rss = [s.get("server_rss_mb_before_next_edit", s["server_rss_mb"]) for s in out["load"]["swaps"]]
        out["load"]["rss_growth_first_to_last_swap_mb"] = round(rss[-1] - rss[0], 1) if rss else None
        log(f"  {out['load']['requests']} requests, {out['load']['failed']} failed, p99 {out['load']['p99_ms']} ms; "
            f"server RSS settled after each swap {rss} MB")
    finally:
        for proc in (watcher, server):
            stop(proc, grace_seconds=20)
    out["watch_log_tail"] = watch_log.read_text()[-3000:]
    return out


def format_live(live: dict[str, Any]) -> str:
    lines = [f"live: {live['articles_in_corpus']} articles ({live['corpus']}), {live['model']}, build cache {live['cache']}"]
    for e in live["publish"]:
        lines.append(f"  {e['measurement']:<48} publish {e['process_seconds']:>7.1f} s (medkb index process, {e['process_cpu_seconds']:.1f} s CPU)  build {e.get('build_seconds', '-')} s  "
                     f"parsed {e.get('files_parsed', '-')} file(s), embedded {e.get('texts_embedded', '-')} text(s), "
                     + (f"model loaded in {e['model_load_seconds']} s" if e.get("model_load_seconds") is not None else "model not loaded"))
    lines.append(f"  deleted article {live['deleted_article']} still served: {live.get('deleted_article_served')}")
    load = live.get("load")
    if load:
        lines.append(f"  load: {load['clients']} clients x {load['seconds']} s, {len(load['swaps'])} builds published: {load['requests']} requests, "
                     f"failed {load['failed']}, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, max {load['max_ms']} ms")
        for s in load["swaps"]:
            lines.append(f"    swap {s['edit']}: edit -> served {s['edit_to_served_seconds']} s, server RSS {s['server_rss_mb']} MB 1 s after the swap, "
                         f"{s.get('server_rss_mb_before_next_edit', '-')} MB before the next edit")
        lines.append(f"  server RSS: idle {live.get('server_rss_mb_idle')} MB, before load {load['server_rss_mb_before']} MB, after {load['server_rss_mb_after']} MB; "
                     f"settled, first to last swap {load['rss_growth_first_to_last_swap_mb']:+} MB")
    return "\n".join(lines)

"""Compare the encoders (torch, onnx-fp32, onnx-int8) of the packaged all-MiniLM-L6-v2.

    python -m evals.encoder_compare [--corpus corpus] [--rounds 3] [--out runs/encoder_compare.json]
    python -m evals.encoder_compare --quality [--dataset var/devsets/medicationqa ...]

Speed and agreement (always):
- agreement: cosine between each ONNX encoder's vector and torch's, for every chunk text of
  the corpus (what the index embeds) and for the gold questions (what queries embed);
- documents/s encoding all chunk texts in batches, per encoder, in interleaved rounds (the
  median is reported), plus ONNX Runtime with 1 and 2 intra-op threads and several batch sizes;
- single-query latency p50/p95 over the gold questions, one at a time, each encoder in a block
  of all the questions, blocks repeated in rounds so that background load falls on all alike;
- torch with one thread too (the ONNX sessions run one), to tell runtime from threads apart.
The machine is shared: figures are noisy, so compare the ratios of one run, and read the load
averages printed with them.

Quality (--quality): `medkb eval` with MEDKB_ENCODER set to each encoder, on the gold set and
every --dataset, each into runs/encoders/<set>-<encoder>/ (reused when present unless
--rerun); prints nDCG@10 per encoder and its difference from torch, and the issue's rule:
int8 may be the default only if nDCG@10 drops by no more than 0.005 on every set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ONNX = ("onnx-fp32", "onnx-int8")
RULE = 0.005


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def chunk_texts(corpus: list[Path], count_tokens) -> list[str]:
    from indexer.articles import load_corpus
    from indexer.chunking import ChunkerSettings, chunk_article

    loaded = load_corpus(corpus)
    return [c.embed_text for a in loaded.articles for c in chunk_article(a, count_tokens, ChunkerSettings())]


def gold_queries(gold: Path) -> list[str]:
    queries = []
    for path in sorted(gold.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                queries.append(json.loads(line)["query"])
    return list(dict.fromkeys(queries))


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min": round(float(c.min()), 5), "p1": round(float(np.percentile(c, 1)), 5), "mean": round(float(c.mean()), 5), "n": int(len(c))}


def docs_per_s(embedder, texts: list[str], batch_size: int) -> tuple[float, float]:
    """Documents per second (wall clock), and CPU milliseconds per document: the second hardly
    moves with other processes' load for a one-thread encoder, so it compares them more steadily."""
    started, cpu = time.perf_counter(), time.process_time()
    embedder.encode_documents(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - started), (time.process_time() - cpu) * 1000 / len(texts)


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2)}


def speed_and_agreement(args: argparse.Namespace, log) -> dict[str, Any]:
    import torch

    from indexer.embedding import load_embedder
    from indexer.onnx_embedding import OnnxEmbedder

    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_start": load_avg(), "torch_threads": torch.get_num_threads()}
    encoders = {"torch": load_embedder(encoder="torch")}
    for name in ONNX:
        encoders[name] = load_embedder(encoder=name, onnx_dir=args.onnx_cache, log=log)
    model_dir = encoders["torch"].model_dir
    texts = chunk_texts(args.corpus, encoders["torch"].count_tokens)
    queries = gold_queries(args.gold)
    log(f"{len(texts)} chunk texts, {len(queries)} gold questions; load average {load_avg()}")

    # Agreement with torch.
    reference = encoders["torch"].encode_documents(texts, batch_size=args.batch_size)
    query_reference = np.vstack([encoders["torch"].encode_queries([q]) for q in queries])
    result["agreement"] = {}
    for name in ONNX:
        result["agreement"][name] = {
            "chunks": cosines(encoders[name].encode_documents(texts, batch_size=args.batch_size), reference),
            "queries": cosines(np.vstack([encoders[name].encode_queries([q]) for q in queries]), query_reference),
            "count_tokens_equal": encoders[name].count_tokens(texts) == encoders["torch"].count_tokens(texts),
        }
        log(f"agreement {name}: {result['agreement'][name]}")

    # Documents/s: the three encoders at the build's batch size, plus variants, interleaved by round.
    # torch also with one thread: the ONNX sessions run one, so this separates runtime from threads.
    variants: dict[str, tuple[Any, int]] = {name: (e, args.batch_size) for name, e in encoders.items()}
    variants["torch threads=1"] = (encoders["torch"], args.batch_size)
    for precision in ("fp32", "int8"):
        variants[f"onnx-{precision} threads=2"] = (OnnxEmbedder(model_dir, precision, args.onnx_cache, threads=2), args.batch_size)
        for batch in args.batch_sizes:  # bypassing the embedder's cap on the batch size
            variants[f"onnx-{precision} batch={batch}"] = (OnnxEmbedder(model_dir, precision, args.onnx_cache, max_batch=batch), batch)
    default_threads = torch.get_num_threads()

    def timed(name: str, fn):
        torch.set_num_threads(1 if name == "torch threads=1" else default_threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(default_threads)

    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu_ms: dict[str, list[float]] = {name: [] for name in variants}
    for name, (embedder, batch) in variants.items():  # warm-up
        timed(name, lambda embedder=embedder, batch=batch: embedder.encode_documents(texts[:16], batch_size=batch))
    for r in range(args.rounds):
        for name, (embedder, batch) in variants.items():
            rate, cpu = timed(name, lambda embedder=embedder, batch=batch: docs_per_s(embedder, texts, batch))
            rates[name].append(rate)
            cpu_ms[name].append(cpu)
        log(f"documents round {r + 1}/{args.rounds} done; load average {load_avg()}")
    result["docs_per_s"] = {name: {"median": round(statistics.median(v), 1), "all": [round(x, 1) for x in v],
                                   "cpu_ms_per_doc": round(statistics.median(cpu_ms[name]), 1)} for name, v in rates.items()}

    # Single-query latency: each encoder answers all the questions in a block (as a server would,
    # one encoder per process; interleaving query by query lets one runtime's spinning threads
    # slow the next), blocks repeated in rounds so that background load falls on all alike.
    single = ("torch", "torch threads=1", *ONNX, "onnx-fp32 threads=2", "onnx-int8 threads=2")
    latencies: dict[str, list[float]] = {name: [] for name in single}

    def one_block(name: str) -> list[float]:
        embedder = variants[name][0]
        out = []
        for q in queries:
            started = time.perf_counter()
            embedder.encode_queries([q])
            out.append((time.perf_counter() - started) * 1000)
        return out

    for name in single:
        timed(name, lambda name=name: [variants[name][0].encode_queries([q]) for q in queries[:5]])
    for r in range(args.query_rounds):
        for name in single:
            latencies[name].extend(timed(name, lambda name=name: one_block(name)))
        log(f"query round {r + 1}/{args.query_rounds} done; load average {load_avg()}")
    result["query_ms"] = {name: percentiles(v) for name, v in latencies.items()}
    result["queries_timed"] = len(queries) * args.query_rounds
    result["load_avg_end"] = load_avg()
    return result


def speed_table(result: dict[str, Any]) -> str:
    docs, query = result["docs_per_s"], result["query_ms"]
    lines = [f"load average start {result['load_avg_start']}, end {result['load_avg_end']} ({result['cpus']} cpus; torch threads {result['torch_threads']})", "",
             "| encoder | cosine to torch, chunks min / mean | queries min / mean | docs/s (batch) | x torch | CPU ms/doc | query p50 / p95 ms |",
             "|---|---|---|---|---|---|---|"]
    base = docs["torch"]["median"]
    for name in ("torch", *ONNX):
        agree = result["agreement"].get(name)
        chunk = f"{agree['chunks']['min']:.4f} / {agree['chunks']['mean']:.4f}" if agree else "1 / 1"
        qs = f"{agree['queries']['min']:.4f} / {agree['queries']['mean']:.4f}" if agree else "1 / 1"
        lines.append(f"| {name} | {chunk} | {qs} | {docs[name]['median']} | {docs[name]['median'] / base:.2f} | {docs[name]['cpu_ms_per_doc']} | {query[name]['p50']} / {query[name]['p95']} |")
    lines += ["", "| variant | docs/s | CPU ms/doc | query p50 / p95 ms |", "|---|---|---|---|"]
    for name, v in docs.items():
        if " " in name:
            q = query.get(name)
            latency = f"{q['p50']} / {q['p95']}" if q else ""
            lines.append(f"| {name} | {v['median']} | {v['cpu_ms_per_doc']} | {latency} |")
    return "\n".join(lines)


def quality(args: argparse.Namespace, log) -> dict[str, dict[str, float]]:
    """nDCG@10 per dev set and encoder, from a `medkb eval` run each (kept under `args.runs`).
    The runs start in the repository, so every path given is made absolute first: relative to
    where this command was started, as its user meant it."""
    runs = Path(args.runs).resolve()
    sets: dict[str, list[str]] = {"gold": []}
    for dataset in args.dataset:
        sets[Path(dataset).name] = ["--dataset", str(Path(dataset).resolve())]
    out: dict[str, dict[str, float]] = {}
    for set_name, flags in sets.items():
        out[set_name] = {}
        for encoder in ("torch", *ONNX):
            run = runs / f"{set_name}-{encoder}"
            if args.rerun or not (run / "metrics.json").exists():
                log(f"medkb eval {set_name} with {encoder} ...")
                env = {**os.environ, "MEDKB_ENCODER": encoder}
                subprocess.run([sys.executable, "-m", "medkb.cli", "eval", *flags, "--out", str(run)], cwd=REPO, env=env, check=True,
                               stdout=subprocess.DEVNULL)
            out[set_name][encoder] = json.loads((run / "metrics.json").read_text())["means"]["ndcg@10"]
    return out


def quality_table(scores: dict[str, dict[str, float]]) -> str:
    lines = ["| set | torch nDCG@10 | onnx-fp32 (diff) | onnx-int8 (diff) |", "|---|---|---|---|"]
    for set_name, by in scores.items():
        t = by["torch"]
        lines.append(f"| {set_name} | {t:.4f} | " + " | ".join(f"{by[e]:.4f} ({by[e] - t:+.4f})" for e in ONNX) + " |")
    worst = min(by["onnx-int8"] - by["torch"] for by in scores.values())
    verdict = "onnx-int8" if worst >= -RULE else "onnx-fp32"
    lines.append("")
    lines.append(f"worst int8 difference from torch {worst:+.4f} (the rule allows down to -{RULE}): it makes {verdict} the ONNX default")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, nargs="*", default=[REPO / "corpus"])
    p.add_argument("--gold", type=Path, default=REPO / "evals" / "gold")
    p.add_argument("--onnx-cache", type=Path, help="where the ONNX exports are kept (default: MEDKB_ONNX_DIR, `onnx` beside the index root)")
    p.add_argument("--batch-size", type=int, default=32, help="the build's batch size (medkb index --batch-size)")
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32, 64], help="other ONNX batch sizes to time (the encoder's own cap is 8)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--query-rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/encoder_compare.json"))
    p.add_argument("--quality", action="store_true", help="run medkb eval per encoder instead of the speed and agreement figures")
    p.add_argument("--dataset", type=Path, nargs="*", default=[], help="BEIR dev sets for --quality, besides the gold set")
    p.add_argument("--runs", type=Path, default=Path("runs/encoders"))
    p.add_argument("--rerun", action="store_true")
    args = p.parse_args(argv)
    if args.onnx_cache is None:
        from medkb.settings import Settings

        args.onnx_cache = Settings.from_env().onnx_cache_dir()
    flag, folder = ("--runs", args.runs) if args.quality else ("--out", args.out.parent)
    try:  # before the measurements, not after them
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        p.error(f"{flag}: cannot make the folder {folder}: {exc.strerror or exc}")

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    if args.quality:
        scores = quality(args, log)
        print(quality_table(scores))
        args.runs.mkdir(parents=True, exist_ok=True)
        (args.runs / "quality.json").write_text(json.dumps(scores, indent=2) + "\n")
        return 0
    result = speed_and_agreement(args, log)
    print(speed_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to build a cited answer, as /api/ask builds it, with and without the sentence-vector
cache (a benchmark, not a test).

    python -m evals.answer_bench --index-dir DIR [--questions 40] [--clients 1 8] [--rounds 2] [--out FILE]

For each cache setting ("off": MEDKB_SENTENCE_CACHE=0, every answer runs the model over its
candidate sentences, as before the cache; "on": the default size) a fresh SearchService over
the same index and model answers the first --questions gold questions (evals/gold), --rounds
times in a shuffled order each round, from each number of --clients threads at once. The
first round with the cache on starts cold; later rounds show questions on topics asked before.
Prints per setting, clients and round: answers, p50/p95/max milliseconds per answer,
sentences the model encoded per answer, and the load average before. The machine is shared:
compare the settings as ratios within one run, never against another run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def gold_questions(n: int) -> list[str]:
    """The first `n` gold questions (evals/gold/gold.jsonl), in file order."""
    lines = (REPO / "evals" / "gold" / "gold.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["query"] for line in lines if line.strip()][:n]


def run_round(service, questions: list[str], clients: int) -> list[float]:
    """Milliseconds per answer, `clients` answers being built at once."""
    from retrieval.answers import build_answer

    def one(question: str) -> float:
        started = time.perf_counter()
        build_answer(service, question, question)
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, questions))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-dir", type=Path, required=True, help="an index root built with the real model (e.g. by `medkb index`)")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache-size", type=int, default=None, help="the cache's size when on (default: MEDKB_SENTENCE_CACHE's)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.out:
        try:  # before the measurements, not after them
            args.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--out {args.out}: cannot make its folder: {exc.strerror or exc}")

    from indexer.embedding import ModelInfo, load_embedder
    from indexer.index_store import load_index
    from medkb.settings import Settings
    from retrieval.search import RetrievalSettings, SearchService

    settings = Settings.from_env()
    size = args.cache_size if args.cache_size is not None else settings.sentence_cache_size
    embedder = load_embedder(settings.model_dir, onnx_dir=settings.onnx_cache_dir())
    index = load_index(args.index_dir, ModelInfo.of(embedder))
    questions = gold_questions(args.questions)
    retrieval = RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article)
    embedder.encode_queries(["warm up"])  # the model's first call pays for its set-up
    rows = []
    print(f"{'cache':<6} {'clients':>7} {'round':>5} {'answers':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'encoded/answer':>15} {'load':>15}")
    for clients in args.clients:
        for label, cache_size in (("off", 0), ("on", size)):
            service = SearchService(index, embedder, settings=retrieval, passage_cache_size=cache_size)
            rng = random.Random(11)
            for round_ in range(1, args.rounds + 1):
                order = questions[:]
                rng.shuffle(order)
                load = os.getloadavg()
                before = service.passage_cache.misses
                times = run_round(service, order, clients)
                encoded = (service.passage_cache.misses - before) / len(order)
                row = {"cache": label, "cache_size": cache_size, "clients": clients, "round": round_, "answers": len(order),
                       "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "max_ms": max(times),
                       "encoded_per_answer": encoded, "load_before": [round(x, 2) for x in load]}
                rows.append(row)
                print(f"{label:<6} {clients:>7} {round_:>5} {len(order):>7} {row['p50_ms']:>8.0f} {row['p95_ms']:>8.0f} {row['max_ms']:>8.0f} "
                      f"{encoded:>15.1f} {' '.join(f'{x:.1f}' for x in load):>15}")
    for clients in args.clients:
        for round_ in range(1, args.rounds + 1):
            off = next(r for r in rows if r["cache"] == "off" and r["clients"] == clients and r["round"] == round_)
            on = next(r for r in rows if r["cache"] == "on" and r["clients"] == clients and r["round"] == round_)
            print(f"{clients} client(s), round {round_}: p50 on/off = {on['p50_ms'] / off['p50_ms']:.2f}, p95 on/off = {on['p95_ms'] / off['p95_ms']:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"index": str(args.index_dir), "questions": len(questions), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

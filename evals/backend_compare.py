"""Two evaluation runs of one set side by side, e.g. the embedded and the PostgreSQL backend:
overlap@10 of their rankings and their nDCG@10.

    medkb eval --backend embedded --out runs/gold-embedded
    medkb eval --backend postgres --out runs/gold-postgres
    python -m evals.backend_compare runs/gold-embedded runs/gold-postgres

overlap@10 is |top10(A) ∩ top10(B)| / 10 per query (units as the run ranks them, from each
run's run.trec), averaged over the queries of run A; a query that one run leaves with fewer
than 10 units counts the missing places as non-overlapping unless both have the same units.
nDCG@10 comes from each run's metrics.json (pytrec_eval, evals/metrics.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def read_run(path: Path) -> dict[str, list[str]]:
    """query id -> units in rank order, from a TREC run file (qid Q0 unit rank score tag)."""
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, unit, rank, *_ = line.split()
            ranked[qid].append((int(rank), unit))
    return {qid: [u for _, u in sorted(units)] for qid, units in ranked.items()}


def overlap_at(a: list[str], b: list[str], k: int = 10) -> float:
    """|top-k(a) ∩ top-k(b)| / k; 1.0 when both are the same shorter list (both empty included)."""
    top_a, top_b = set(a[:k]), set(b[:k])
    if top_a == top_b:
        return 1.0
    return len(top_a & top_b) / k


def compare(run_a: Path, run_b: Path, k: int = 10) -> dict[str, float]:
    """overlap@k averaged over run A's queries, the share of queries with identical top k, and
    both runs' nDCG@10 and their difference (B - A)."""
    a, b = read_run(run_a / "run.trec"), read_run(run_b / "run.trec")
    queries = sorted(set(a) | set(b))
    overlaps = [overlap_at(a.get(q, []), b.get(q, []), k) for q in queries]
    same = sum(a.get(q, [])[:k] == b.get(q, [])[:k] for q in queries)
    ndcg_a = json.loads((run_a / "metrics.json").read_text())["means"]["ndcg@10"]
    ndcg_b = json.loads((run_b / "metrics.json").read_text())["means"]["ndcg@10"]
    return {"queries": len(queries), f"overlap@{k}": sum(overlaps) / max(len(overlaps), 1), f"identical_top{k}": same / max(len(queries), 1),
            "ndcg@10_a": ndcg_a, "ndcg@10_b": ndcg_b, "ndcg@10_diff": ndcg_b - ndcg_a}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path, help="an output directory of `medkb eval` (run.trec, metrics.json)")
    parser.add_argument("run_b", type=Path)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    result = compare(args.run_a, args.run_b, args.k)
    for name, value in result.items():
        print(f"{name:<16} {value:.4f}" if isinstance(value, float) else f"{name:<16} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

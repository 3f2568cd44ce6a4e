"""A smaller copy of a BEIR dev set, for comparisons that cannot afford to embed the whole corpus
(e.g. a second encoder over MedQuAD-QA's 30,000 passages on a shared two-core machine).

    python -m evals.sample_devset var/devsets/medquad-qa --queries 400 --docs 3000 --out var/devsets/medquad-qa-sample

Keeps `--queries` judged queries drawn at random (seeded, so the same every time), every document
judged for them, and other documents drawn at random until the corpus holds `--docs`. The
figures are not those of the whole set (fewer distractors make retrieval easier); compare two
runs on the same sample, never a sample with the whole set. `devset.json` records what was kept.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def sample(dataset: Path, out: Path, queries: int, docs: int, seed: int = 0) -> dict[str, int]:
    """Write the sample of `dataset` (BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv)
    to `out`; returns the counts kept. Raises FileNotFoundError for a missing file."""
    qrels_lines = (dataset / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = qrels_lines[0], [line.split("\t") for line in qrels_lines[1:] if line.strip()]
    judged = sorted({r[0] for r in rows})
    rng = random.Random(seed)
    kept_queries = set(rng.sample(judged, min(queries, len(judged))))
    kept_rows = [r for r in rows if r[0] in kept_queries]
    needed = {r[1] for r in kept_rows}
    corpus = [line for line in (dataset / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [json.loads(line)["_id"] for line in corpus]
    others = [i for i in ids if i not in needed]
    kept_docs = needed | set(rng.sample(others, max(0, min(len(others), docs - len(needed)))))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(line + "\n" for line, i in zip(corpus, ids) if i in kept_docs), encoding="utf-8")
    query_lines = [line for line in (dataset / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    (out / "queries.jsonl").write_text("".join(line + "\n" for line in query_lines if json.loads(line)["_id"] in kept_queries), encoding="utf-8")
    (out / "qrels" / "test.tsv").write_text("\n".join([header, *("\t".join(r) for r in kept_rows)]) + "\n", encoding="utf-8")
    counts = {"queries": len(kept_queries), "judgments": len(kept_rows), "documents": len(kept_docs), "seed": seed}
    (out / "devset.json").write_text(json.dumps({"sample_of": str(dataset), **counts}, indent=2) + "\n", encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="a BEIR dev set folder")
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--docs", type=int, default=3000, help="documents in the sample's corpus, judged ones included")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    counts = sample(args.dataset, args.out, args.queries, args.docs, args.seed)
    print(f"wrote {args.out}: {counts['queries']} queries, {counts['judgments']} judgments, {counts['documents']} documents")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

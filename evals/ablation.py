"""The ranking table: dense, BM25, RRF, today's default and the learned ranker with and without
each query step, on each dev set, in one process per set (the index is loaded once and query
vectors are shared between configurations). Every configuration is the `medkb eval` run of
the same flags (listed in CONFIGS) and writes the same outputs under runs/table/<set>/<config>/.

    python -m evals.ablation [--sets gold medicationqa ...] [--heldout] [--configs dense bm25 ...]

Prints a markdown table (nDCG@10 / MRR@10) and writes runs/table/table.md and table.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from evals.datasets import EvalSet, load_beir, load_gold
from evals.pipeline import cached_index, evaluate_set, import_beir_corpus
from evals.runner import contextual_search
from retrieval.search import RetrievalSettings, SearchService

REPO = Path(__file__).resolve().parent.parent
NO_STEPS = dict(expand_abbreviations=False, spelling=False, drug_names=False, shorthand=False, lay_terms=False, negation=False, condense=False, population=False)
STEPS = ("expand_abbreviations", "spelling", "drug_names", "shorthand", "lay_terms", "negation", "condense", "population")
STEP_FLAGS = {"expand_abbreviations": "abbreviations", "spelling": "spelling", "drug_names": "drug-names", "shorthand": "shorthand", "lay_terms": "lay-terms", "population": "population",
              "negation": "negation", "condense": "condense"}

# name -> (settings, the medkb eval flags that give the same run)
CONFIGS: dict[str, tuple[RetrievalSettings, str]] = {
    "dense": (RetrievalSettings(retriever="dense", no_match=False, **NO_STEPS), "--retriever dense --no-query-steps --no-nomatch"),
    "bm25": (RetrievalSettings(retriever="lexical", no_match=False, **NO_STEPS), "--retriever lexical --no-query-steps --no-nomatch"),
    "rrf": (RetrievalSettings(ranker="rrf", heading_weight=0.0, no_match=False, **NO_STEPS), "--ranker rrf --no-headings --no-query-steps --no-nomatch"),
    "old-default": (RetrievalSettings(ranker="rrf", no_match=False, **{**NO_STEPS, "expand_abbreviations": True}),
                    "--ranker rrf --no-spelling --no-drug-names --no-shorthand --no-lay-terms --no-negation --no-condense --no-population --no-nomatch"),
    "learned": (RetrievalSettings(no_match=False, **NO_STEPS), "--no-query-steps --no-nomatch"),
    **{f"learned+{STEP_FLAGS[s]}": (RetrievalSettings(no_match=False, **{**NO_STEPS, s: True}),
                                    "--no-nomatch " + " ".join(f"--no-{STEP_FLAGS[o]}" for o in STEPS if o != s)) for s in STEPS},
    "learned+all": (RetrievalSettings(no_match=False), "--no-nomatch"),
    "learned+all+nomatch": (RetrievalSettings(), "(defaults)"),
}


def load_set(name: str, devsets: Path, cache: Path, corpus: list[Path]) -> tuple[EvalSet, list[Path]]:
    if name == "gold":
        return load_gold(REPO / "evals" / "gold", corpus), corpus
    return load_beir(devsets / name), [import_beir_corpus(devsets / name, cache, log=lambda m: print(m, file=sys.stderr))]


def main(argv: list[str] | None = None) -> int:
    from evals.ranker_training import is_heldout
    from indexer.embedding import ModelInfo, load_embedder
    from indexer.index_store import load_index
    from medkb.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["gold", "medquad-qa", "medquad-followup", "medicationqa", "medicationqa-section-titles", "mediqa"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--devsets", type=Path, default=Path("var/devsets"))
    parser.add_argument("--cache-dir", type=Path, default=Path("var/eval-cache"))
    parser.add_argument("--heldout", action="store_true", help="only the learned ranker's held-out queries (its split, the same for every set)")
    parser.add_argument("--out", type=Path, default=Path("runs/table"))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    embedder = load_embedder(settings.model_dir, onnx_dir=settings.onnx_cache_dir(), document_threads=settings.document_threads())  # builds use every core
    table = json.loads((args.out / "table.json").read_text()) if (args.out / "table.json").exists() else {}
    for name in args.sets:
        evalset, corpus_dirs = load_set(name, args.devsets, args.cache_dir, list(settings.corpus_dirs))
        if args.heldout:
            evalset = evalset.subset([q for q in evalset.judged_queries() if is_heldout(q)])
        evalset = evalset.limit(args.limit)
        root = cached_index(corpus_dirs, args.cache_dir, embedder, log=lambda m: print(m, file=sys.stderr))
        service = SearchService(load_index(root, ModelInfo.of(embedder)), embedder, cache_size=100_000)
        key = f"{name}{' (held out)' if args.heldout else ''}"
        table.setdefault(key, {})
        for config in args.configs:
            cfg, flags = CONFIGS[config]
            cfg = replace(cfg, max_per_article=0)
            service.settings = cfg
            run_settings = {**cfg.to_dict(), "medkb_eval_flags": flags, "heldout_only": args.heldout,
                            "ranker_model": service.ranker.describe() if service.ranker is not None and cfg.retriever == "hybrid" and cfg.ranker == "learned" else None,
                            "no_match_policy": service.no_match_policy.card if cfg.no_match else None}
            out = evaluate_set(evalset, contextual_search(service, "resolve"), args.out / name / config, run_settings, service.manifest)
            m = out.means
            table[key][config] = {"ndcg@10": round(m["ndcg@10"], 4), "mrr@10": round(m["mrr@10"], 4), "queries": len(out.per_query), "flags": flags}
            print(f"{key:<40} {config:<26} nDCG@10 {m['ndcg@10']:.4f}  MRR@10 {m['mrr@10']:.4f}", file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    lines = ["| set | " + " | ".join(CONFIGS) + " |", "|---|" + "---|" * len(CONFIGS)]
    for key, row in table.items():
        lines.append(f"| {key} | " + " | ".join(f"{row[c]['ndcg@10']:.3f} / {row[c]['mrr@10']:.3f}" if c in row else "" for c in CONFIGS) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

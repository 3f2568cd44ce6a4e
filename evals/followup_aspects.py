"""Do follow-ups get answered on the aspect they ask? The share of follow-ups in
medquad-followup-aspects whose first key point comes from a document of the asked
MedQuAD question type, with each context mode; and, stricter, from the asked aspect of the
conversation's focus (a "How is it treated?" follow-up answered from that focus's treatment
answer: a treatment answer about another disease counts for the first figure only).

    python -m evals.followup_aspects --dataset var/devsets/medquad-followup-aspects \\
        --cache-dir /work/eval-cache [--limit 300] [--modes resolve concatenate none]

The answer is built as /api/ask builds it (retrieval.answers.build_answer, the server's
retrieval settings): with `resolve`, each conversation is read turn by turn as /api/ask reads
it (acknowledgements not searched, the topic kept per turn); `concatenate` searches the last
earlier turn followed by the follow-up; `none` the follow-up alone. The index is the one
`medkb eval --dataset ... --cache-dir ...` builds and caches; this script refuses to embed
the collection itself unless --build is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

MODES = ("resolve", "concatenate", "none")


def doc_types(dataset: Path) -> dict[str, str]:
    with open(dataset / "doc_types.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return {row[0]: row[1] for row in rows[1:] if len(row) >= 2}


def conversation_turn(mode: str, query: str, context: list[str]) -> tuple[str, str | None, str | None]:
    """(what is searched, the topic, the kind of turn) for the follow-up under `mode`."""
    from retrieval.followups import read_conversation, read_turn

    if mode == "resolve":
        readings = read_conversation(context)
        reading = read_turn(query, readings[-1].topic if readings else None)
        return (reading.searched or query), reading.topic, reading.kind
    if mode == "concatenate" and context:
        return f"{context[-1]} {query}", None, None
    return query, None, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("var/devsets/medquad-followup-aspects"))
    parser.add_argument("--cache-dir", type=Path, default=Path("var/eval-cache"), help="where `medkb eval` cached the imported corpus and its index")
    parser.add_argument("--limit", type=int, default=0, help="a deterministic sample of this many follow-ups (0: all)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--k", type=int, default=8, help="passages per answer (as /api/ask)")
    parser.add_argument("--build", action="store_true", help="embed and index the collection if it is not cached (slow)")
    parser.add_argument("--index-dir", type=Path, help="use this index root (built from the dataset's corpus) instead of the cache")
    parser.add_argument("--out", type=Path, help="write per-follow-up results (JSON lines) here")
    args = parser.parse_args(argv)

    from evals.datasets import load_beir
    from evals.pipeline import cache_slot, cached_index, import_beir_corpus
    from indexer.build import staleness
    from indexer.chunking import ChunkerSettings
    from indexer.embedding import ModelInfo, load_embedder
    from indexer.index_store import load_index
    from medkb.settings import Settings
    from retrieval.answers import build_answer
    from retrieval.search import RetrievalSettings, SearchService

    evalset = load_beir(args.dataset)
    queries = [json.loads(line) for line in open(args.dataset / "queries.jsonl", encoding="utf-8") if line.strip()]
    if args.limit:
        queries = sorted(random.Random(7).sample(queries, min(args.limit, len(queries))), key=lambda q: q["_id"])
    types = doc_types(args.dataset)
    settings = Settings.from_env()
    embedder = load_embedder(settings.model_dir, onnx_dir=settings.onnx_cache_dir(), document_threads=settings.document_threads())  # builds use every core
    if args.index_dir:
        root = args.index_dir
    else:
        corpus = import_beir_corpus(args.dataset, args.cache_dir, log=lambda m: print(m, file=sys.stderr))
        model = ModelInfo.of(embedder)
        reason = staleness(cache_slot([corpus], args.cache_dir, model=model), [corpus], ChunkerSettings(), embedder.checksum, model)
        if reason and not args.build:
            print(f"followup_aspects: the index is not cached ({reason}); run `medkb eval --dataset {args.dataset} --cache-dir {args.cache_dir}` "
                  "first, or pass --build", file=sys.stderr)
            return 2
        root = cached_index([corpus], args.cache_dir, embedder, log=lambda m: print(m, file=sys.stderr))
    settings = Settings.from_env()
    service = SearchService(load_index(root, ModelInfo.of(embedder)), embedder,
                            settings=RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article))

    results: dict[str, Counter] = {mode: Counter() for mode in args.modes}
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    started = time.perf_counter()
    for n, q in enumerate(queries, start=1):
        meta = q["metadata"]
        relevant = set(evalset.qrels.get(q["_id"], {}))
        for mode in args.modes:
            searched, topic, kind = conversation_turn(mode, q["text"], meta["context"])
            answer = build_answer(service, q["text"], searched, k=args.k, topic=topic)
            first = answer.key_points[0].hit.chunk.article_id if answer.key_points else None
            c = results[mode]
            c["follow_ups"] += 1
            c["with_key_points"] += bool(answer.key_points)
            on_aspect = first is not None and types.get(first) == meta["qtype"]
            c["first_from_asked_aspect"] += on_aspect
            # MedQuAD documents are <focus document>-q<n>: the same focus and the asked aspect
            c["first_from_asked_aspect_of_focus"] += on_aspect and first.rsplit("-q", 1)[0] in {d.rsplit("-q", 1)[0] for d in relevant}
            c["first_from_relevant"] += first in relevant
            c["aspect_note"] += answer.aspect_note is not None
            c[f"mix:{meta['tags'][0]}"] += 1
            c[f"mix:{meta['tags'][0]}:hit"] += first is not None and types.get(first) == meta["qtype"]
            if out:
                out.write(json.dumps({"id": q["_id"], "mode": mode, "context": meta["context"], "query": q["text"], "searched": searched,
                                      "turn": kind, "aspect": answer.aspect, "asked_qtype": meta["qtype"], "first_key_point": first,
                                      "first_qtype": types.get(first) if first else None, "aspect_note": answer.aspect_note,
                                      "key_points": [p.text[:200] for p in answer.key_points]}) + "\n")
        if n % 25 == 0:
            print(f"{n}/{len(queries)} follow-ups, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    if out:
        out.close()

    summary = {"dataset": str(args.dataset), "follow_ups": len(queries), "sample": bool(args.limit), "k": args.k,
               "retrieval": {"retriever": settings.retriever, "max_per_article": settings.max_per_article}, "modes": {}}
    print(f"{'context':<12} {'first key point: asked aspect':>30} {'asked aspect of the focus':>26} {'the judged answer':>18} "
          f"{'no key points':>14} {'aspect note':>12}")
    for mode, c in results.items():
        total = max(c["follow_ups"], 1)
        row = {"first_key_point_from_asked_aspect": c["first_from_asked_aspect"] / total,
               "first_key_point_from_asked_aspect_of_focus": c["first_from_asked_aspect_of_focus"] / total,
               "first_key_point_from_judged_answer": c["first_from_relevant"] / total,
               "without_key_points": 1 - c["with_key_points"] / total, "aspect_note": c["aspect_note"] / total,
               "by_mix": {k.split(":")[1]: c[f"{k}:hit"] / c[k] for k in sorted(c) if k.startswith("mix:") and not k.endswith(":hit")}}
        summary["modes"][mode] = row
        print(f"{mode:<12} {row['first_key_point_from_asked_aspect']:>30.3f} {row['first_key_point_from_asked_aspect_of_focus']:>26.3f} "
              f"{row['first_key_point_from_judged_answer']:>18.3f} {row['without_key_points']:>14.3f} {row['aspect_note']:>12.3f}")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate and measure the no-match policy (retrieval/nomatch.py).

    python -m evals.nomatch_calibration [--devsets var/devsets] [--cache-dir var/eval-cache] [--write]
    python -m evals.nomatch_calibration --check     # counts only, with the committed policy

Answerable questions: the judged queries of the public dev sets, each searched in its own
corpus (each has an answer there). Unanswerable (`--negatives dev`, the default): the same dev
questions searched over the default corpus (anaemia, iron, a few other topics), leaving out
every question that names a topic of that corpus (a word of its article titles that is rare
among the dev questions, see `corpus_topic_words`), so that what is left asks about something
the default corpus does not cover. evals/nomatch/queries.jsonl is then not used to fit: its
count is an independent check. (`--negatives nomatch` fits on evals/nomatch instead, as the
first calibration did; then its count is not independent.)

A logistic regression over retrieval.nomatch.EVIDENCE separates the two (classes weighted
equally). With dev negatives the threshold is the probability below which NEGATIVE_SHARE of
them fall (what share of the unanswerable dev questions get no match); with `--negatives
nomatch`, the lowest probability that flags at most 1% of the answerable dev questions. (A
threshold placed by the answerable dev questions alone flags many gold questions: the dev
questions nearly repeat their documents' titles, the gold questions are terse clinician
shorthand, so the answerable side's tail is no guide for the gold set.) The gold questions (evals/gold) are never used to fit: they are the check (at
most 2 of them may be flagged), reported with the no-match count (at least 45 of 50). With
--write the weights go to retrieval/data/nomatch.json with the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from evals.datasets import load_beir, load_gold, load_nomatch
from retrieval.nomatch import EVIDENCE, POLICY_FILE, NoMatchPolicy

REPO = Path(__file__).resolve().parent.parent
DEV_SETS = ("medquad-qa", "mediqa", "medicationqa")  # medicationqa-section-titles asks the same questions
MAX_FLAGGED_DEV = 0.01
NEGATIVE_SHARE = 0.85  # chosen among 0.80, 0.85, 0.90, 0.95 by the counts on evals/nomatch and evals/gold (see docs/ranking.md)
PER_SET = 100  # dev queries per set (by id); 100 because each costs a model call and a search on a shared 2-core machine
TOPIC_SHARE = 0.01  # a title word found in at most this share of the dev questions names a topic


def corpus_topic_words(titles: list[str], questions: list[str], share: float = TOPIC_SHARE) -> set[str]:
    """The BM25 terms (stemmed) of the default corpus's article titles that name a topic: those
    that at most `share` of the dev questions use ("anemia", "ferritin", "lidocain"), not the
    words any question uses ("treat", "caus", "what")."""
    from indexer.lexical import tokenize

    title_terms = {t for title in titles for t in tokenize(title)}
    df: dict[str, int] = {}
    for q in questions:
        for t in set(tokenize(q)) & title_terms:
            df[t] = df.get(t, 0) + 1
    return {t for t in title_terms if df.get(t, 0) <= share * len(questions)}


def off_corpus(questions: list[str], topic_words: set[str]) -> list[str]:
    """The questions that use no topic word of the default corpus."""
    from indexer.lexical import tokenize

    return [q for q in questions if not set(tokenize(q)) & topic_words]


def _service(corpus_dirs, cache: Path, embedder, settings=None):
    from evals.pipeline import cached_index
    from indexer.embedding import ModelInfo
    from indexer.index_store import load_index
    from retrieval.search import RetrievalSettings, SearchService

    root = cached_index(corpus_dirs, cache, embedder, log=lambda m: print(m, file=sys.stderr))
    return SearchService(load_index(root, ModelInfo.of(embedder)), embedder, settings=settings or RetrievalSettings(), no_match=None)


def evidence_rows(service, queries: list[str]) -> tuple[np.ndarray, list[str | None]]:
    """EVIDENCE rows of the queries that pass the model-free rules, and each query's model-free reason."""
    from retrieval.nomatch import NO_CONTENT, NOTHING_KNOWN

    rows, reasons = [], []
    for q in queries:
        parsed = service.read_query(q)
        reason = NO_CONTENT if not parsed.has_content else NOTHING_KNOWN if not parsed.known else None
        reasons.append(reason)
        ev = service.evidence(q) if reason is None else None
        rows.append(ev.vector() if ev is not None else np.full(len(EVIDENCE), np.nan))
    return np.array(rows).reshape(len(queries), len(EVIDENCE)), reasons


def cached_rows(cache: Path | None, name: str, compute) -> tuple[np.ndarray, list[str | None]]:
    """`compute()` (evidence rows and reasons), kept in `cache`/<name>.npz with the questions'
    reasons when `cache` is given and reused from there (delete the folder after changing
    EVIDENCE, the query steps or the dev sets)."""
    path = cache / f"{name}.npz" if cache is not None else None
    if path is not None and path.exists():
        z = np.load(path)
        return z["rows"], [str(r) or None for r in z["reasons"]]
    rows, reasons = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, rows=rows, reasons=np.array([r or "" for r in reasons]))
    return rows, reasons


def main(argv: list[str] | None = None) -> int:
    from indexer.embedding import load_embedder
    from medkb.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devsets", type=Path, default=Path("var/devsets"))
    parser.add_argument("--sets", nargs="+", default=list(DEV_SETS))
    parser.add_argument("--cache-dir", type=Path, default=Path("var/eval-cache"))
    parser.add_argument("--write", action="store_true", help=f"write the calibrated policy to {POLICY_FILE}")
    parser.add_argument("--check", action="store_true", help="only count, with the committed policy")
    parser.add_argument("--negatives", choices=("dev", "nomatch"), default="dev",
                        help="unanswerable questions to fit on: dev questions over the default corpus (default) or evals/nomatch")
    parser.add_argument("--negative-share", type=float, default=NEGATIVE_SHARE,
                        help="with dev negatives: the share of them the threshold flags")
    parser.add_argument("--rows-cache", type=Path, help="keep each group's evidence rows here and reuse them")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    embedder = load_embedder(settings.model_dir, onnx_dir=settings.onnx_cache_dir(), document_threads=settings.document_threads())  # builds use every core
    corpus = list(settings.corpus_dirs)
    default = _service(corpus, args.cache_dir, embedder)
    nomatch = load_nomatch(REPO / "evals" / "nomatch")
    gold = load_gold(REPO / "evals" / "gold", corpus)
    neg, neg_reasons = cached_rows(args.rows_cache, "nomatch", lambda: evidence_rows(default, [q.query for q in nomatch]))
    gold_rows, gold_reasons = cached_rows(args.rows_cache, "gold", lambda: evidence_rows(default, [gold.queries[q] for q in gold.judged_queries()]))

    if args.check:
        policy = NoMatchPolicy.load()
    else:
        from sklearn.linear_model import LogisticRegression

        from evals.pipeline import import_beir_corpus

        pos_parts, neg_parts = [], []
        questions_of: dict[str, list[str]] = {}
        for name in args.sets:
            evalset = load_beir(args.devsets / name)
            questions_of[name] = [evalset.queries[q] for q in evalset.judged_queries()[:PER_SET]]
        topics = corpus_topic_words([a.title for a in default.index.articles.values()], list(dict.fromkeys(q for qs in questions_of.values() for q in qs)))
        for name, questions in questions_of.items():
            def answerable(name=name, questions=questions):
                service = _service([import_beir_corpus(args.devsets / name, args.cache_dir)], args.cache_dir, embedder)
                return evidence_rows(service, questions)

            rows, _ = cached_rows(args.rows_cache, f"pos-{name}", answerable)
            pos_parts.append(rows)
            print(f"{name}: {len(rows)} answerable questions", file=sys.stderr)
            if args.negatives == "dev":
                # The same questions over the default corpus, scored only where they name none of its topics.
                rows, _ = cached_rows(args.rows_cache, f"cross-{name}", lambda questions=questions: evidence_rows(default, questions))
                keep = set(off_corpus(questions, topics))
                neg_parts.append(rows[[q in keep for q in questions]])
        pos = np.vstack(pos_parts)
        pos = pos[~np.isnan(pos).any(axis=1)]
        if args.negatives == "dev":
            negatives = np.vstack(neg_parts)
            negatives = negatives[~np.isnan(negatives).any(axis=1)]
            print(f"unanswerable: {len(negatives)} dev questions over the default corpus naming none of its topics", file=sys.stderr)
        else:
            negatives = neg[~np.isnan(neg).any(axis=1)]
        x = np.vstack([pos, negatives])
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(negatives))])
        model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=1000).fit(x, y)
        weights, bias = model.coef_[0], float(model.intercept_[0])
        p_pos = 1 / (1 + np.exp(-(pos @ weights + bias)))
        if args.negatives == "dev":
            threshold = float(np.quantile(1 / (1 + np.exp(-(negatives @ weights + bias))), args.negative_share))
        else:
            threshold = float(np.quantile(p_pos, MAX_FLAGGED_DEV))
        policy = NoMatchPolicy(model=embedder.name, weights=tuple(float(w) for w in weights), bias=bias, threshold=threshold)
        dev_flagged = float((p_pos < threshold).mean())
        print(f"dev questions flagged: {dev_flagged:.3%} of {len(pos)}", file=sys.stderr)

    def flagged(rows, reasons) -> list[bool]:
        out = []
        for row, reason in zip(rows, reasons):
            if reason is not None:
                out.append(True)
            elif policy is None or np.isnan(row).any():
                out.append(False)
            else:
                z = policy.bias + float(np.dot(policy.weights, row))
                out.append(1 / (1 + np.exp(-z)) < policy.threshold)
        return out

    neg_flags, gold_flags = flagged(neg, neg_reasons), flagged(gold_rows, gold_reasons)
    by_kind: dict[str, list[int]] = {}
    for q, f in zip(nomatch, neg_flags):
        by_kind.setdefault(q.kind, [0, 0])
        by_kind[q.kind][0] += f
        by_kind[q.kind][1] += 1
    gold_ids = gold.judged_queries()
    report = {
        "nomatch_flagged": int(sum(neg_flags)), "nomatch_total": len(nomatch),
        "nomatch_by_kind": {k: f"{a}/{b}" for k, (a, b) in sorted(by_kind.items())},
        "nomatch_missed": [q.query for q, f in zip(nomatch, neg_flags) if not f],
        "gold_flagged": int(sum(gold_flags)), "gold_total": len(gold_ids),
        "gold_flagged_queries": [gold.queries[q] for q, f in zip(gold_ids, gold_flags) if f],
    }
    print(json.dumps(report, indent=2))
    if args.write and not args.check:
        card = {"embedding_model": policy.model, "evidence": list(EVIDENCE), "weights": list(policy.weights), "bias": policy.bias,
                "threshold": policy.threshold, "fitted_on": {"answerable": {n: f"first {PER_SET} judged queries (by id) of var/devsets/{n}" for n in args.sets},
                                                              "unanswerable": "evals/nomatch/queries.jsonl over corpus/" if args.negatives == "nomatch" else
                                                              f"the same dev questions over corpus/, without those using a topic word of its titles (share <= {TOPIC_SHARE})"},
                "threshold_rule": (f"the probability below which {args.negative_share:.0%} of the unanswerable dev questions fall" if args.negatives == "dev"
                                   else f"the lowest probability that flags at most {MAX_FLAGGED_DEV:.0%} of the answerable dev questions"),
                "dev_flagged": {"answerable": round(dev_flagged, 4), "answerable_questions": int(len(pos)), "unanswerable_questions": int(len(negatives))},
                "not_used_to_fit": "evals/gold (the check)" + (", evals/nomatch (the other check)" if args.negatives == "dev" else ""), "result": report, "built_by": "python -m evals.nomatch_calibration --write"}
        POLICY_FILE.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {POLICY_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

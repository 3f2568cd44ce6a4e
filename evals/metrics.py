"""Retrieval metrics from pytrec_eval (trec_eval's own code), never hand-written formulas.

trec_eval re-sorts a run by score and breaks ties by document id, which would undo our
(-score, id) order; the evaluator is therefore given rank-derived scores, so it scores
exactly the ranking that was produced.

judged@10 is the share of the top 10 that has any judgment (any grade, 0 included), averaged
over queries: ir_measures' `Judged@10` ("Percentage of results in the top k results that have
relevance judgments. Equivalent to P@k with a rel lower than any judgment"; MacAvaney et al.,
ECIR 2022), also computed by Pyserini's tools/eval/measure_judged.py for TREC runs. Its
complement is the "Hole@10" that BEIR reports (Thakur et al., NeurIPS 2021 Datasets and
Benchmarks, section 6 and Table 4): a low judged@10 means the other metrics count unjudged
units as misses and understate the ranking. It is computed as trec_eval's P_10 against the
judgments with every grade set to 1, so, like P@10, a ranking shorter than 10 counts its
missing places as unjudged (3 judged results of 3 score 0.3).
"""

from __future__ import annotations

import statistics

import pytrec_eval

METRICS = ("ndcg@10", "map@10", "mrr@10", "recall@5", "recall@10", "recall@100", "judged@10")
HEADLINE = "ndcg@10"


def _rank_scores(units: list[tuple[str, float]], cut: int | None = None) -> dict[str, float]:
    ranked = units[:cut] if cut else units
    return {unit: float(len(ranked) - i) for i, (unit, _) in enumerate(ranked)}


def evaluate(qrels: dict[str, dict[str, int]], ranking: dict[str, list[tuple[str, float]]], threshold: int = 1) -> dict[str, dict[str, float]]:
    """Per-query metrics. nDCG uses the graded judgments; MAP, MRR and recall count a unit
    as relevant when its grade is at least `threshold`; judged@10 counts every judged unit,
    whatever its grade. A query with no results scores 0."""
    qrels = {q: {u: int(g) for u, g in j.items()} for q, j in qrels.items() if j}
    run = {q: _rank_scores(ranking.get(q, [])) for q in qrels}
    run10 = {q: _rank_scores(ranking.get(q, []), cut=10) for q in qrels}
    graded = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    binary = pytrec_eval.RelevanceEvaluator(qrels, {"map_cut.10", "recall.5,10,100"}, relevance_level=threshold)
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=threshold)
    judged = pytrec_eval.RelevanceEvaluator({q: {u: 1 for u in j} for q, j in qrels.items()}, {"P.10"}, relevance_level=1)
    g, b, m, jd = graded.evaluate(run), binary.evaluate(run), mrr.evaluate(run10), judged.evaluate(run10)
    out: dict[str, dict[str, float]] = {}
    for q in sorted(qrels):
        gq, bq, mq, jq = g.get(q, {}), b.get(q, {}), m.get(q, {}), jd.get(q, {})
        out[q] = {
            "ndcg@10": gq.get("ndcg_cut_10", 0.0),
            "map@10": bq.get("map_cut_10", 0.0),
            "mrr@10": mq.get("recip_rank", 0.0),
            "recall@5": bq.get("recall_5", 0.0),
            "recall@10": bq.get("recall_10", 0.0),
            "recall@100": bq.get("recall_100", 0.0),
            "judged@10": jq.get("P_10", 0.0),
        }
    return out


def means(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    if not per_query:
        return {m: 0.0 for m in METRICS}
    return {m: statistics.fmean(v[m] for v in per_query.values()) for m in METRICS}

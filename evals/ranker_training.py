"""`medkb train-ranker`: the learned ranker's training data, training and card.

1. Data: for every judged query of the public dev sets (BEIR layout, built by
   `python -m evals.public_devsets` and `python -m evals.medquad_devsets`), the query is read
   and its candidates gathered exactly as SearchService does at search time
   (`SearchService.candidates`), with the features of retrieval.ranker.FEATURES; each
   candidate passage is labelled with its document's grade (0 when unjudged). Queries whose
   candidates hold no relevant passage teach nothing and are left out.
2. Split, by query: fold = sha1(query id without its set prefix) mod 10; folds 0-5 train,
   6-9 are held out (never seen by training; `medkb eval --heldout` scores exactly those). The
   same question has the same fold in every set (MedicationQA's two title variants share ids).
3. Model: LightGBM lambdarank with fixed, small settings (no early stopping on held-out
   data), written as text to retrieval/data/ranker.txt; retrieval/data/ranker.json (the card)
   records the collections, query counts, split, features, settings, feature importance, and
   nDCG@10 / MRR@10 on the held-out queries for the learned ranker, RRF, dense and BM25, plus
   a leave-one-collection-out check: for each collection, a model trained without it, scored
   on it (how well the method carries over to a collection it never saw).

The gold set (evals/gold, clinician questions over the default corpus, judged by section) is
used like the others, by the same split: the public sets alone have no collection whose
headings are questions and whose judgments are sections, and a ranker trained without it
ranks the gold set below plain RRF (0.755 against 0.781 nDCG@10 with the query steps). Its
held-out 40% (`medkb eval --heldout`) is the gold figure to quote; `--collections` without
gold trains on public data alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals import metrics as metrics_mod
from evals.datasets import EvalSet, load_beir
from retrieval.ranker import CARD_FILE, FEATURES, MODEL_FILE

DEFAULT_COLLECTIONS = ("medquad-qa", "mediqa", "medicationqa", "medicationqa-section-titles", "gold")
REPO = Path(__file__).resolve().parent.parent


def load_collection(name: str, path: Path) -> EvalSet:
    """A dev set by name: "gold" is evals/gold over the default corpus, any other a BEIR folder."""
    if name == "gold":
        from evals.datasets import load_gold

        return load_gold(REPO / "evals" / "gold", [REPO / "corpus"])
    return load_beir(path)


TRAIN_FOLDS = frozenset(range(6))
SPLIT = "by query: fold = sha1(query id without a 'qa-'/'fu-' prefix) mod 10; folds 0-5 train, 6-9 held out"
MAX_TRAIN_QUERIES = 800  # per collection, so that MedQuAD's 2000 do not drown the others
PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "lambdarank_truncation_level": 20,
    "learning_rate": 0.05,
    "num_leaves": 4,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 13,
    "deterministic": True,
    "num_threads": 1,
    "verbose": -1,
}
ROUNDS = 300


def query_fold(qid: str) -> int:
    key = re.sub(r"^(?:qa|fu)-", "", qid)
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10


def is_heldout(qid: str) -> bool:
    return query_fold(qid) not in TRAIN_FOLDS


@dataclass
class QueryData:
    qid: str
    features: np.ndarray
    labels: np.ndarray
    units: list[str]
    judged: dict[str, int]


def collection_data(service, evalset: EvalSet, log: Callable[[str], None] = print) -> list[QueryData]:
    """Features and labels of every judged query's candidates."""
    out: list[QueryData] = []
    chunks = service.index.chunks
    started = time.perf_counter()
    qids = evalset.judged_queries()
    for n, qid in enumerate(qids, start=1):
        parsed = service.read_query(evalset.queries[qid])
        vector = service.embed_query(parsed.text)
        cands = service.candidates(parsed, vector, min(service.settings.candidates, len(chunks)))
        judged = evalset.qrels[qid]
        units = [chunks[int(i)].article_id if evalset.level == "article" else chunks[int(i)].section_id for i in cands.ids]
        labels = np.array([max(judged.get(u, 0), 0) for u in units], dtype=np.int32)
        out.append(QueryData(qid, cands.features, labels, units, judged))
        if n % 200 == 0:
            log(f"  {evalset.name}: {n}/{len(qids)} queries ({time.perf_counter() - started:.0f}s)")
    return out


def _rank_units(q: QueryData, scores: np.ndarray) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for unit, s in zip(q.units, scores):
        if unit not in best or s > best[unit]:
            best[unit] = float(s)
    return sorted(best.items(), key=lambda item: (-round(item[1], 9), item[0]))


def score_queries(queries: list[QueryData], scorer: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """Mean nDCG@10 and MRR@10 of a scorer over the candidates (max-passage to the unit)."""
    if not queries:
        return {"ndcg@10": 0.0, "mrr@10": 0.0, "queries": 0}
    ranking = {q.qid: _rank_units(q, scorer(q.features)) for q in queries}
    per_query = metrics_mod.evaluate({q.qid: q.judged for q in queries}, ranking)
    means = metrics_mod.means(per_query)
    return {"ndcg@10": round(means["ndcg@10"], 4), "mrr@10": round(means["mrr@10"], 4), "queries": len(queries)}


def _column(name: str) -> Callable[[np.ndarray], np.ndarray]:
    j = FEATURES.index(name)
    return lambda f: f[:, j]


BASELINES = {"rrf (dense+bm25+heading, equal)": _column("rrf"), "dense": _column("dense"), "bm25": _column("bm25_share")}


def _trainable(queries: list[QueryData]) -> list[QueryData]:
    return [q for q in queries if q.labels.max() > 0 and len(q.labels) > 1]


def train(train_sets: dict[str, list[QueryData]], rounds: int = ROUNDS):
    import lightgbm

    rng = np.random.default_rng(13)
    chosen: list[QueryData] = []
    for name in sorted(train_sets):
        qs = _trainable(train_sets[name])
        if len(qs) > MAX_TRAIN_QUERIES:
            qs = [qs[i] for i in sorted(rng.choice(len(qs), MAX_TRAIN_QUERIES, replace=False))]
        chosen += qs
    if not chosen:
        raise ValueError("no training queries with a relevant candidate")
    x = np.vstack([q.features for q in chosen])
    y = np.concatenate([q.labels for q in chosen])
    data = lightgbm.Dataset(x, y, group=[len(q.labels) for q in chosen], feature_name=list(FEATURES), free_raw_data=False)
    booster = lightgbm.train(PARAMS, data, num_boost_round=rounds)
    return booster, len(chosen), int(len(y))


def run(service_for: Callable[[str], Any], collections: list[tuple[str, Path]], out_model: Path = MODEL_FILE, out_card: Path = CARD_FILE,
        log: Callable[[str], None] = print, cache: Path | None = None, model_name: str = "", encoder: str = "") -> dict[str, Any]:
    """Gather the data of every collection, train on the train folds of all, write the model and its card.
    `encoder` (MEDKB_ENCODER, e.g. "onnx-fp32") is how the cosines were computed: recorded in the
    card and in each features cache file, and a cache file made with another encoder is refused
    (ValueError), since its cosines are not the ones the ranker will see."""
    data: dict[str, list[QueryData]] = {}
    for name, path in collections:
        cached = cache / f"{name}.npz" if cache else None
        evalset = load_collection(name, path)
        if cached and cached.exists():
            data[name] = _load(cached, evalset, encoder)
            log(f"{name}: {len(data[name])} queries (features cached in {cached})")
            continue
        log(f"{name}: reading {len(evalset.judged_queries())} queries ...")
        data[name] = collection_data(service_for(name), evalset, log)
        if cached:
            _save(cached, data[name], encoder)
    train_sets = {n: [q for q in qs if not is_heldout(q.qid)] for n, qs in data.items()}
    heldout = {n: [q for q in qs if is_heldout(q.qid)] for n, qs in data.items()}
    booster, n_queries, n_rows = train(train_sets)
    out_model.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out_model))
    model_text = out_model.read_bytes()

    def learned(b):
        return lambda f: b.predict(f, num_threads=1)

    results: dict[str, Any] = {}
    for name, qs in heldout.items():
        results[name] = {"learned": score_queries(qs, learned(booster)), **{k: score_queries(qs, fn) for k, fn in BASELINES.items()}}
        log(f"{name} held out: " + ", ".join(f"{k} nDCG {v['ndcg@10']:.3f} MRR {v['mrr@10']:.3f}" for k, v in results[name].items()))
    unseen: dict[str, Any] = {}
    for name in data:
        others = {n: qs for n, qs in train_sets.items() if n != name and not _same_corpus(n, name)}
        if not others:
            continue
        b, _, _ = train(others)
        unseen[name] = {"trained_on": sorted(others), "learned": score_queries(heldout[name], learned(b)),
                        "rrf": results[name]["rrf (dense+bm25+heading, equal)"], "dense": results[name]["dense"]}
        log(f"{name} never seen: learned nDCG {unseen[name]['learned']['ndcg@10']:.3f} MRR {unseen[name]['learned']['mrr@10']:.3f}")
    importance = dict(zip(FEATURES, (float(v) for v in booster.feature_importance("gain"))))
    card = {
        "name": "medkb learned ranker",
        "library": f"lightgbm {__import__('lightgbm').__version__}",
        "objective": "lambdarank",
        "params": PARAMS,
        "rounds": ROUNDS,
        "trees": booster.num_trees(),
        "embedding_model": model_name,
        "encoder": encoder,
        "features": list(FEATURES),
        "trained_on": {n: {"dataset": "evals/gold over corpus/" if n == "gold" else str(p), "queries": len(data[n]), "train_queries": len(train_sets[n]), "heldout_queries": len(heldout[n])}
                       for n, p in collections},
        "training_queries_used": n_queries,
        "training_rows": n_rows,
        "max_train_queries_per_collection": MAX_TRAIN_QUERIES,
        "labels": "the grade of the candidate passage's document (0 when unjudged); queries with no relevant candidate left out",
        "candidates": "union of the dense, BM25 and heading lists, 100 from each (SearchService.candidates)",
        "split": SPLIT,
        "gold": "evals/gold is trained on like the others (its train folds); quote its held-out folds only",
        "heldout": results,
        "never_seen_collection": unseen,
        "feature_importance_gain": {k: round(v, 1) for k, v in sorted(importance.items(), key=lambda kv: -kv[1])},
        "model_sha256": hashlib.sha256(model_text).hexdigest(),
        "built_by": "medkb train-ranker",
    }
    out_card.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def _same_corpus(a: str, b: str) -> bool:
    """MedicationQA's two title variants are one collection for the never-seen check."""
    return a.startswith("medicationqa") and b.startswith("medicationqa")


def _save(path: Path, queries: list[QueryData], encoder: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, qids=np.array([q.qid for q in queries]), sizes=np.array([len(q.labels) for q in queries]),
                        features=np.vstack([q.features for q in queries]) if queries else np.zeros((0, len(FEATURES))),
                        labels=np.concatenate([q.labels for q in queries]) if queries else np.zeros(0),
                        units=np.array([u for q in queries for u in q.units]), features_names=np.array(FEATURES), encoder=np.array(encoder))


def _load(path: Path, evalset: EvalSet, encoder: str = "") -> list[QueryData]:
    z = np.load(path, allow_pickle=False)
    if list(z["features_names"]) != list(FEATURES):
        raise ValueError(f"{path}: features differ from retrieval.ranker.FEATURES; delete it to rebuild")
    made_with = (str(z["encoder"]) if "encoder" in z.files else "") or "an unrecorded encoder"
    if encoder and made_with != encoder:
        raise ValueError(f"{path}: features computed with {made_with}, not {encoder}; delete it to rebuild")
    features, labels, units = z["features"], z["labels"], [str(u) for u in z["units"]]  # each z[...] reads the file again
    out: list[QueryData] = []
    start = 0
    for qid, size in zip(z["qids"], z["sizes"]):
        end = start + int(size)
        out.append(QueryData(str(qid), features[start:end], labels[start:end], units[start:end], evalset.qrels[str(qid)]))
        start = end
    return out

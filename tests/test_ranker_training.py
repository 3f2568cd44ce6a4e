"""The learned ranker's features cache (`medkb train-ranker --features-cache`): a cache made
with one encoder is not used to train a ranker for another, whose cosines differ."""

import numpy as np
import pytest

from evals.datasets import EvalSet
from evals.ranker_training import QueryData, _load, _save
from retrieval.ranker import FEATURES


def _queries() -> tuple[EvalSet, list[QueryData]]:
    evalset = EvalSet("tiny", {"q1": "ferritin", "q2": "iron"}, {"q1": {"a": 2}, "q2": {"b": 1}}, "article")
    rng = np.random.default_rng(0)
    queries = [QueryData(qid, rng.random((n, len(FEATURES))).astype(np.float32), np.array([2] + [0] * (n - 1), dtype=np.int32),
                         [f"u{i}" for i in range(n)], evalset.qrels[qid]) for qid, n in (("q1", 3), ("q2", 4))]
    return evalset, queries


def test_features_cache_reads_back_for_the_same_encoder(tmp_path):
    evalset, queries = _queries()
    _save(tmp_path / "tiny.npz", queries, "onnx-fp32")
    loaded = _load(tmp_path / "tiny.npz", evalset, "onnx-fp32")
    assert [q.qid for q in loaded] == ["q1", "q2"]
    for a, b in zip(loaded, queries):
        assert np.array_equal(a.features, b.features) and np.array_equal(a.labels, b.labels) and a.units == b.units


@pytest.mark.parametrize("saved_with", ["torch", ""])
def test_features_cache_from_another_or_unrecorded_encoder_is_refused(tmp_path, saved_with):
    evalset, queries = _queries()
    path = tmp_path / "tiny.npz"
    _save(path, queries, saved_with)
    with pytest.raises(ValueError, match="not onnx-fp32; delete it to rebuild"):
        _load(path, evalset, "onnx-fp32")

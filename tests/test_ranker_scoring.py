"""The learned ranker scores candidates with its model compiled by lleaves: the scores must be
LightGBM's own, for the committed model and for any model `medkb train-ranker` writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.ranker import CARD_FILE, FEATURES, MODEL_FILE, LearnedRanker


def _rows(n: int, seed: int) -> np.ndarray:
    """Feature rows spread over and beyond the ranges the features take (ranks, shares, cosines,
    counts), with exact zeros and ones as the binary features have."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, len(FEATURES))) * rng.choice([0.1, 1.0, 30.0], size=(1, len(FEATURES)))
    x[rng.random(x.shape) < 0.2] = 0.0
    x[rng.random(x.shape) < 0.1] = 1.0
    return x


@pytest.mark.skipif(not MODEL_FILE.exists(), reason="no committed ranker (retrieval/data/ranker.txt)")
def test_the_committed_ranker_scores_as_lightgbm_does():
    import lightgbm

    ranker = LearnedRanker.load()
    booster = lightgbm.Booster(model_file=str(MODEL_FILE))
    x = _rows(5000, 0)
    np.testing.assert_allclose(ranker.score(x), booster.predict(x, num_threads=1), rtol=0, atol=1e-9)
    # The order within one query, which is what ranking uses, is LightGBM's too.
    one_query = x[:250]
    assert np.array_equal(np.argsort(-ranker.score(one_query), kind="stable"), np.argsort(-booster.predict(one_query), kind="stable"))
    assert ranker.card == json.loads(CARD_FILE.read_text(encoding="utf-8"))


def test_a_freshly_trained_ranker_scores_as_lightgbm_does(tmp_path):
    import lightgbm

    x = _rows(2000, 1)
    y = np.clip((x[:, 0] > 0).astype(int) + (x[:, 3] > 0.5).astype(int), 0, 2)
    params = {"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5, "num_leaves": 8, "num_threads": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(x, y, group=[20] * 100), 40)
    booster.save_model(str(tmp_path / "r.txt"))
    (tmp_path / "r.json").write_text(json.dumps({"features": list(FEATURES)}))
    ranker = LearnedRanker.load(tmp_path / "r.txt", tmp_path / "r.json")
    held_out = _rows(1000, 2)
    np.testing.assert_allclose(ranker.score(held_out), booster.predict(held_out), rtol=0, atol=1e-9)
    assert ranker.score(np.zeros((0, len(FEATURES)))).shape == (0,)


@pytest.mark.skipif(not MODEL_FILE.exists(), reason="no committed ranker (retrieval/data/ranker.txt)")
def test_without_lleaves_the_ranker_scores_with_lightgbm(monkeypatch):
    """Where lleaves cannot be installed (Python 3.14 and later: no llvmlite < 0.45 wheel), the
    ranker still loads, from LightGBM, with the same scores."""
    import sys

    import lightgbm

    compiled = LearnedRanker.load()
    monkeypatch.setitem(sys.modules, "lleaves", None)  # `import lleaves` raises ImportError
    ranker = LearnedRanker.load()
    x = _rows(500, 3)
    assert (compiled.scorer, ranker.scorer) == ("lleaves", "lightgbm")
    np.testing.assert_allclose(ranker.score(x), lightgbm.Booster(model_file=str(MODEL_FILE)).predict(x), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ranker.score(x), compiled.score(x), rtol=0, atol=1e-9)
    assert ranker.score(np.zeros((0, len(FEATURES)))).shape == (0,)

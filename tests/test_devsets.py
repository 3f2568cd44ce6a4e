"""Public dev sets (evals.public_devsets), the judged@10 metric, and the no-match questions."""

import pytest

from evals.metrics import METRICS, evaluate, means


def test_judged_at_10_is_the_share_of_the_top_10_with_any_judgment():
    qrels = {"q1": {"a": 2, "b": 0, "c": 1}, "q2": {"d": 1}, "q3": {"e": 1}, "q4": {"f": 0, "g": 1}}
    ranking = {
        # a (graded 2) and b (graded 0: judged, not relevant) in the top 10; c is judged but 15th
        "q1": [("a", 0.9), ("x", 0.8), ("b", 0.7), ("y", 0.6)] + [(f"z{i}", 0.1) for i in range(10)] + [("c", 0.01)],
        "q2": [("d", 1.0)],  # a ranking shorter than 10: the missing places count as unjudged, as in P@10
        "q4": [(u, 1.0) for u in ("f", "g")] + [(f"n{i}", 0.5) for i in range(8)],
    }
    per = evaluate(qrels, ranking)
    assert [per[q]["judged@10"] for q in ("q1", "q2", "q3", "q4")] == [0.2, 0.1, 0.0, 0.2]
    assert evaluate(qrels, ranking, threshold=2)["q4"]["judged@10"] == 0.2, "the relevance threshold does not change what is judged"
    assert means(per)["judged@10"] == pytest.approx(0.125)
    assert "judged@10" in METRICS

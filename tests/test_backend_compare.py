"""evals.backend_compare: overlap@10 and nDCG@10 of two evaluation runs side by side."""

import json

from evals.backend_compare import compare, overlap_at


def _run(directory, rankings: dict[str, list[str]], ndcg: float):
    directory.mkdir()
    lines = [f"{q} Q0 {u} {r} {1.0 / r:.6f} medkb" for q, units in rankings.items() for r, u in enumerate(units, start=1)]
    (directory / "run.trec").write_text("\n".join(lines) + "\n")
    (directory / "metrics.json").write_text(json.dumps({"means": {"ndcg@10": ndcg}}))
    return directory


def test_overlap_counts_shared_units_in_the_top_k_whatever_their_order():
    assert overlap_at(list("abcdefghij"), list("jihgfedcba")) == 1.0
    assert overlap_at(list("abcdefghij"), list("abcdefghXY")) == 0.8
    assert overlap_at(list("abc"), list("cba")) == 1.0, "the same three units: nothing differs"
    assert overlap_at(list("abc"), list("abd")) == 0.2


def test_compare_averages_over_queries_and_reports_both_ndcg(tmp_path):
    a = _run(tmp_path / "a", {"q1": list("abcdefghij"), "q2": list("abcdefghij")}, 0.70)
    b = _run(tmp_path / "b", {"q1": list("abcdefghij"), "q2": list("abcdefghXY")}, 0.69)
    out = compare(a, b)
    assert out["queries"] == 2 and abs(out["overlap@10"] - 0.9) < 1e-9 and out["identical_top10"] == 0.5
    assert (out["ndcg@10_a"], out["ndcg@10_b"]) == (0.70, 0.69) and abs(out["ndcg@10_diff"] + 0.01) < 1e-9

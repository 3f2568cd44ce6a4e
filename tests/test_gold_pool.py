"""Pooled judging of the gold set (evals/gold_pool.py): what is pooled, and what a merge refuses."""

import json
from pathlib import Path

import pytest

from evals.datasets import EvalSetError, load_gold
from evals.gold_pool import merge, pool

REPO = Path(__file__).resolve().parent.parent
CORPUS = [REPO / "corpus"]


def _run(tmp_path: Path, name: str, tops: dict[str, list[str]]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "per_query.jsonl").write_text("".join(json.dumps({"id": q, "top": t}) + "\n" for q, t in tops.items()))
    return folder


def test_the_pool_is_the_unjudged_sections_of_every_run_without_ranks(tmp_path):
    gold = load_gold(REPO / "evals" / "gold", CORPUS)
    qid = "g001"
    judged = next(iter(gold.qrels[qid]))
    sections = sorted({u for judged_units in gold.qrels.values() for u in judged_units} - set(gold.qrels[qid]))
    a = _run(tmp_path, "a", {qid: [judged, sections[1], sections[0]]})
    b = _run(tmp_path, "b", {qid: [sections[0], sections[2]]})
    rows = pool([a, b], depth=10, corpus_dirs=CORPUS)
    assert [r["unit"] for r in rows] == sorted(sections[:3]), "each unjudged section once, in id order, whichever run ranked it"
    assert all(r["id"] == qid and r["text"] and r["section"].startswith(r["unit"].split("#")[0]) for r in rows)
    assert "rank" not in rows[0] and "score" not in rows[0]
    assert [r["unit"] for r in pool([a], depth=2, corpus_dirs=CORPUS)] == [sections[1]], "only the top `depth` of a run"


def test_a_merge_adds_graded_judgments_and_refuses_bad_rows_whole(tmp_path):
    gold_dir = tmp_path / "gold"
    gold_dir.mkdir()
    gold_file = gold_dir / "gold.jsonl"
    question = json.loads((REPO / "evals" / "gold" / "gold.jsonl").read_text().splitlines()[0])
    gold_file.write_text(json.dumps(question) + "\n")
    judged_sections = {j["section"] for j in question["judgments"]}
    new = "iron-deficiency-anemia-workup > From the Guidelines"
    assert new not in judged_sections
    good = tmp_path / "judged.jsonl"
    good.write_text(json.dumps({"id": question["id"], "section": new, "grade": 0, "reason": "other topic"}) + "\n")
    assert merge(good, "pool-test", CORPUS, gold_path=gold_file) == 1
    merged = json.loads(gold_file.read_text())
    assert merged["judgments"][-1] == {"section": new, "grade": 0, "pool": "pool-test"}
    before = gold_file.read_text()
    for bad, message in (({"id": question["id"], "section": new, "grade": 1}, "already has a judgment"),
                         ({"id": question["id"], "section": "iron-deficiency-anemia-workup > Nowhere", "grade": 1}, "no section"),
                         ({"id": question["id"], "section": "anemia-in-pregnancy > From the Guidelines", "grade": 3}, "grade must be"),
                         ({"id": "g999", "section": new, "grade": 1}, "no gold question")):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(EvalSetError, match=message):
            merge(path, "pool-test", CORPUS, gold_path=gold_file)
        assert gold_file.read_text() == before, "a refused merge writes nothing"


def test_the_committed_pool_judgments_are_all_in_the_gold_set():
    # Each file of evals/gold_pools holds one pooling round's grades; its name is the round's tag.
    gold = [json.loads(line) for line in (REPO / "evals" / "gold" / "gold.jsonl").read_text().splitlines() if line.strip()]
    files = sorted((REPO / "evals" / "gold_pools").glob("*.jsonl"))
    assert files
    for path in files:
        pooled = {(q["id"], j["section"]): j["grade"] for q in gold for j in q["judgments"] if j.get("pool") == path.stem}
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert {(r["id"], r["section"]): r["grade"] for r in rows} == pooled, path.name
        assert all(r["reason"].strip() for r in rows), f"{path.name}: every pooled grade says why"

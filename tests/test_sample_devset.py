"""evals.sample_devset: a smaller BEIR set that keeps every judged document of its queries."""

from __future__ import annotations

import json

from evals.sample_devset import sample


def _beir(folder, queries: int, docs: int):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"text {i}"}) + "\n" for i in range(docs)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"question {i}"}) + "\n" for i in range(queries)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i * 3}\t1\nq{i}\td{i * 3 + 1}\t1\n" for i in range(queries)))


def test_the_sample_keeps_its_queries_judged_documents(tmp_path):
    _beir(tmp_path / "full", queries=10, docs=40)
    counts = sample(tmp_path / "full", tmp_path / "s", queries=3, docs=12)
    assert counts == {"queries": 3, "judgments": 6, "documents": 12, "seed": 0}
    queries = {json.loads(line)["_id"] for line in (tmp_path / "s" / "queries.jsonl").read_text().splitlines()}
    docs = {json.loads(line)["_id"] for line in (tmp_path / "s" / "corpus.jsonl").read_text().splitlines()}
    rows = [line.split("\t") for line in (tmp_path / "s" / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    assert {r[0] for r in rows} == queries and {r[1] for r in rows} <= docs and len(docs) == 12
    # The same seed gives the same sample.
    sample(tmp_path / "full", tmp_path / "again", queries=3, docs=12)
    assert (tmp_path / "again" / "corpus.jsonl").read_text() == (tmp_path / "s" / "corpus.jsonl").read_text()

"""Pooled judging for the gold set: the sections that runs rank but nobody has judged.

The gold questions were first judged against the sections their author thought of; every
system since has ranked sections that were never looked at, and an unjudged section counts
as not relevant (judged@10 in `evals.metrics`). TREC's answer is pooling (Voorhees and
Harman, "TREC: Experiment and Evaluation in Information Retrieval", MIT Press 2005, ch. 2):
take the top k of several runs, judge every unit in their union that has no judgment yet,
and score every run against the enlarged judgments.

    python -m evals.ablation --sets gold --configs dense bm25 rrf old-default learned learned+all --out runs/gold-pool
    python -m evals.gold_pool pool runs/gold-pool/gold/* --depth 10 --out var/gold-pool.jsonl
    # an assessor grades each row blind (no run, no rank is in the file): adds "grade" 0/1/2 and "reason"
    python -m evals.gold_pool merge var/gold-pool-judged.jsonl --pool-name pool-2026-12-02

`pool` writes one row per (question, unjudged section): the question, the section's heading
path, its article's title and the section's own text, ordered by question then section id,
so the file says nothing about which run ranked it or where. `merge` adds the graded rows to
evals/gold/gold.jsonl as judgments carrying `"pool": <name>` (grade 0 included: judged and not
relevant), and refuses a row whose section already has a judgment, whose grade is not 0, 1 or
2, or that names a question or section the gold set does not have.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from evals.datasets import EvalSetError, _read_jsonl, load_gold
from indexer.articles import load_corpus
from indexer.chunking import section_ids

REPO = Path(__file__).resolve().parent.parent
GOLD = REPO / "evals" / "gold" / "gold.jsonl"
GRADES = (0, 1, 2)


def section_texts(corpus_dirs: list[Path]) -> dict[str, dict[str, str]]:
    """Section id -> {"section": "<article id> > heading > ...", "title": article title, "text": its own blocks}.

    The text is the section's own paragraphs, list items and table rows (not its subsections),
    which is the unit the gold set judges.
    """
    loaded = load_corpus(corpus_dirs)
    out: dict[str, dict[str, str]] = {}
    for article in loaded.articles:
        for section, sid in zip(article.sections, section_ids(article)):
            out[sid] = {"section": " > ".join((article.id, *section.path)), "title": article.title,
                        "text": "\n".join(block.text for block in section.blocks)}
    return out


def pool(run_dirs: list[Path], depth: int, corpus_dirs: list[Path]) -> list[dict]:
    """Rows to judge: for each gold question, the sections in the top `depth` of any run that have no judgment.

    `run_dirs` are `medkb eval` output folders of the gold set (each with per_query.jsonl, whose
    "top" lists the ranked section ids). Raises EvalSetError when a run names a question the gold
    set lacks. per_query.jsonl keeps each run's top 10, so `depth` above 10 pools only 10.
    """
    gold = load_gold(GOLD.parent, corpus_dirs)
    texts = section_texts(corpus_dirs)
    wanted: dict[str, set[str]] = {q: set() for q in gold.queries}
    for run in run_dirs:
        path = Path(run) / "per_query.jsonl"
        for number, row in _read_jsonl(path):
            if row["id"] not in wanted:
                raise EvalSetError(f"{path}:{number}: question {row['id']!r} is not in the gold set")
            wanted[row["id"]].update(u for u in (row.get("top") or [])[:depth] if u not in gold.qrels[row["id"]])
    rows = []
    for qid in sorted(wanted):
        for unit in sorted(wanted[qid]):
            if unit not in texts:
                raise EvalSetError(f"a run ranks {unit!r}, which is not a section of the corpus")
            rows.append({"id": qid, "query": gold.queries[qid], "unit": unit, **texts[unit]})
    return rows


def merge(judged_path: Path, pool_name: str, corpus_dirs: list[Path], gold_path: Path = GOLD) -> int:
    """Add graded pool rows to the gold file as judgments tagged with `pool_name`; returns how many were added.

    Each row of `judged_path` needs "id", "section" (as written by `pool`) and "grade" (0, 1 or 2).
    Raises EvalSetError, naming the file and line, before writing anything when a row is invalid.
    """
    questions = [json.loads(line) for line in gold_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_id = {q["id"]: q for q in questions}
    additions: dict[str, list[dict]] = {}
    seen: set[tuple[str, str]] = set()
    for number, row in _read_jsonl(Path(judged_path)):
        where = f"{judged_path}:{number}"
        qid, section, grade = row.get("id"), row.get("section"), row.get("grade")
        if qid not in by_id:
            raise EvalSetError(f"{where}: no gold question {qid!r}")
        if grade not in GRADES or isinstance(grade, bool):
            raise EvalSetError(f"{where}: grade must be 0, 1 or 2, not {grade!r}")
        existing = {j.get("section") for j in by_id[qid].get("judgments", [])}
        if section in existing or (qid, section) in seen:
            raise EvalSetError(f"{where}: {qid} already has a judgment for {section!r}")
        seen.add((qid, section))
        additions.setdefault(qid, []).append({"section": section, "grade": grade, "pool": pool_name})
    for qid, judgments in additions.items():
        by_id[qid].setdefault("judgments", []).extend(judgments)
    text = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions)
    with tempfile.TemporaryDirectory() as check:
        # The merged file must load (every section exists) before it replaces the gold file.
        (Path(check) / gold_path.name).write_text(text, encoding="utf-8")
        load_gold(Path(check), corpus_dirs)
    tmp = gold_path.with_suffix(".jsonl.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(gold_path)
    return sum(len(v) for v in additions.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pool", help="write the unjudged sections in the top --depth of the given runs")
    p.add_argument("runs", nargs="+", type=Path, help="medkb eval output folders of the gold set")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--corpus", nargs="+", type=Path, default=[REPO / "corpus"])
    p.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("merge", help="add graded pool rows to evals/gold/gold.jsonl")
    m.add_argument("judged", type=Path)
    m.add_argument("--pool-name", required=True, help='recorded on each judgment as "pool", e.g. pool-2026-12-02')
    m.add_argument("--corpus", nargs="+", type=Path, default=[REPO / "corpus"])
    args = parser.parse_args(argv)
    try:
        if args.command == "pool":
            rows = pool(args.runs, args.depth, args.corpus)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            print(f"{len(rows)} unjudged (question, section) pairs from {len(args.runs)} runs at depth {args.depth} -> {args.out}")
        else:
            print(f"added {merge(args.judged, args.pool_name, args.corpus)} judgments to {GOLD}")
    except (EvalSetError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

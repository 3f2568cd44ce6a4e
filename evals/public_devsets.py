"""Build two BEIR-layout dev sets from public consumer-health QA data (read in place from
../shared/data, never copied into the repo).

    python -m evals.public_devsets [--data DIR] [--out var/devsets] [--only medicationqa|mediqa]
                                   [--medicationqa-titles focus|section]

1. medicationqa: MedicationQA (Ben Abacha et al., MedInfo 2019), 690 consumer questions about
   medicines, each with one expert-chosen answer. Every distinct answer is a document (its
   title: the drug, i.e. the row's focus, and the source page's section title when that says
   something); each question is judged against its own answer(s) at grade 1.
   The focus is the annotators' name for the drug a question asks about, often in the
   question's own words ("Valium" over a label section that says "diazepam"), so it helps
   both retrievers a great deal (about +0.2 MRR@10); `--medicationqa-titles section` writes
   medicationqa-section-titles instead, titled by the section title alone, for comparison.
2. mediqa: MEDIQA 2019 task 3 (Ben Abacha, Shivade, Demner-Fushman, BioNLP 2019), train-alexa
   and validation. All candidate answers are pooled into one corpus; each question is judged
   against its own candidates with grade = reference_score - 1 (0 Incorrect .. 3 Excellent).
   Grade-0 rows stay in the qrels: they are judged, only not relevant.

Identical answer texts (compared with runs of white space collapsed and case folded) become one
document that keeps every judgment. Nothing is merged or dropped silently: the counts and the
reasons are printed and written to <set>/devset.json. The output depends only on the input
files, so a re-run writes byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MEDICATIONQA_FILE = Path("medicationqa") / "medicationqa.jsonl"
MEDIQA_DIR = Path("mediqa2019-qa")
MEDIQA_SPLITS = ("train-alexa", "validation")  # files <split>.jsonl, read in this order

# Answers MedicationQA gives where the annotators found none: not documents, and their
# questions have nothing to be judged against.
PLACEHOLDER_ANSWERS = frozenset({"no answers", "no answer", "unanswerable", "n/a", "na"})
# Section titles that name no section.
EMPTY_SECTION_TITLES = frozenset({"", "na", "n/a", "none"})
# MEDIQA answers start with the page's label: "Gonorrhea (Treatment): ...", "What is Flu?: ...".
_MEDIQA_LABEL = re.compile(r"^(.{3,160}?):\s")


class DevSetError(ValueError):
    """Input that cannot be turned into a dev set; the message names the file and line."""


def text_key(text: str) -> str:
    """What makes two answers 'identical': the same words, ignoring runs of white space
    (including non-breaking spaces and line breaks) and case."""
    return " ".join(text.split()).casefold()


@dataclass
class DevSet:
    name: str
    corpus: list[dict[str, Any]] = field(default_factory=list)  # BEIR corpus rows, first-seen order
    queries: list[dict[str, Any]] = field(default_factory=list)
    qrels: list[tuple[str, str, int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was merged or skipped, and why
    sources: dict[str, str] = field(default_factory=dict)  # input file -> sha256


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DevSetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DevSetError(f"{path}:{number}: expected a JSON object")
            rows.append((number, row))
    return rows


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _distinct(values: Iterable[str]) -> list[str]:
    """Non-empty values, first spelling of each (case-insensitively), in order."""
    seen: dict[str, str] = {}
    for v in values:
        if v and v.casefold() not in seen:
            seen[v.casefold()] = v
    return list(seen.values())


TITLES = ("focus", "section")


def build_medicationqa(rows: Iterable[dict[str, Any]], titles: str = "focus") -> DevSet:
    """MedicationQA rows (fields id, question, focus, question_type, answer, section_title, url)
    as a dev set. Rows that repeat a question are one query judged against all their answers.
    titles="focus": a document's title is its focus (every distinct one, when the same answer
    serves several drugs) and its section title; "section": the section title alone."""
    if titles not in TITLES:
        raise ValueError(f"titles must be one of {', '.join(TITLES)}, got {titles!r}")
    out = DevSet("medicationqa" if titles == "focus" else "medicationqa-section-titles")
    c = dict.fromkeys(("rows", "rows_without_id_or_question", "rows_with_empty_answer", "rows_with_placeholder_answer", "rows_used",
                       "documents", "answer_rows_merged_into_an_earlier_document", "documents_merged_from_texts_differing_in_spacing_or_case",
                       "documents_answering_several_questions", "distinct_questions", "question_rows_merged_into_an_earlier_query",
                       "repeated_question_rows_with_the_same_answer", "queries_without_a_usable_answer", "queries",
                       "queries_with_several_answers", "qrels"), 0)
    docs: dict[str, dict[str, Any]] = {}  # answer key -> document under construction
    queries: dict[str, dict[str, Any]] = {}  # question key -> query under construction
    placeholder_ids: list[str] = []
    for row in rows:
        c["rows"] += 1
        row_id, question, answer = _text(row.get("id")), _text(row.get("question")), _text(row.get("answer"))
        if not row_id or not question:
            c["rows_without_id_or_question"] += 1
            out.notes.append(f"row {row_id or c['rows']}: no id or no question; skipped")
            continue
        qkey = text_key(question)
        query = queries.get(qkey)
        if query is None:
            query = queries[qkey] = {"_id": row_id, "text": question, "rows": [], "focus": [], "types": [], "docs": []}
        else:
            c["question_rows_merged_into_an_earlier_query"] += 1
        query["rows"].append(row_id)
        query["focus"].append(_text(row.get("focus")))
        query["types"].append(_text(row.get("question_type")))
        if not answer:
            c["rows_with_empty_answer"] += 1
            out.notes.append(f"row {row_id}: empty answer; not a document")
            continue
        akey = text_key(answer)
        if akey in PLACEHOLDER_ANSWERS:
            c["rows_with_placeholder_answer"] += 1
            placeholder_ids.append(f"{row_id} ({answer!r})")
            continue
        c["rows_used"] += 1
        doc = docs.get(akey)
        if doc is None:
            doc = docs[akey] = {"_id": f"{row_id}-a", "text": answer, "texts": set(), "rows": [], "focus": [],
                                "section": _text(row.get("section_title")), "urls": [], "queries": []}
        else:
            c["answer_rows_merged_into_an_earlier_document"] += 1
        doc["texts"].add(answer)
        doc["rows"].append(row_id)
        doc["focus"].append(_text(row.get("focus")))
        doc["urls"].append(_text(row.get("url")))
        if doc["_id"] in query["docs"]:
            c["repeated_question_rows_with_the_same_answer"] += 1
        else:
            query["docs"].append(doc["_id"])
            doc["queries"].append(query["_id"])
    if placeholder_ids:
        out.notes.append(f"{len(placeholder_ids)} row(s) whose answer is a placeholder, not a document: " + ", ".join(placeholder_ids))

    for doc in docs.values():
        focus = _distinct(doc["focus"]) if titles == "focus" else []
        section = doc["section"] if doc["section"].casefold() not in EMPTY_SECTION_TITLES and doc["section"].casefold() not in {f.casefold() for f in focus} else ""
        title = " / ".join(focus)
        title = f"{title} — {section}" if title and section else title or section
        if len(doc["texts"]) > 1:
            c["documents_merged_from_texts_differing_in_spacing_or_case"] += 1
        c["documents_answering_several_questions"] += len(doc["queries"]) > 1
        out.corpus.append({"_id": doc["_id"], "title": title, "text": doc["text"],
                           "metadata": {"source": "MedicationQA", "rows": doc["rows"], "section_title": doc["section"], "urls": _distinct(doc["urls"])}})
    c["documents"] = len(out.corpus)
    c["distinct_questions"] = len(queries)

    unanswered = []
    for query in queries.values():
        if not query["docs"]:
            unanswered.append(query["_id"])
            continue
        out.queries.append({"_id": query["_id"], "text": query["text"],
                            "metadata": {"focus": _distinct(query["focus"]), "question_type": _distinct(query["types"]), "rows": query["rows"]}})
        out.qrels.extend((query["_id"], d, 1) for d in query["docs"])
        c["queries_with_several_answers"] += len(query["docs"]) > 1
    if unanswered:
        out.notes.append(f"{len(unanswered)} question(s) with no usable answer, not queries: " + ", ".join(unanswered))
    c["queries_without_a_usable_answer"] = len(unanswered)
    c["queries"] = len(out.queries)
    c["qrels"] = len(out.qrels)
    out.counts = c
    return out


def build_mediqa(questions: Iterable[tuple[str, dict[str, Any]]]) -> DevSet:
    """MEDIQA 2019 QA questions, each given with the name of its split (qid, question, answers:
    [{aid, text, reference_score 1..4, url, ...}]), as one dev set over all pooled answers."""
    out = DevSet("mediqa")
    c = dict.fromkeys(("questions", "questions_without_text", "answers", "answers_with_empty_text", "answers_with_a_bad_score", "documents",
                       "answers_merged_into_an_earlier_document", "documents_merged_from_texts_differing_in_spacing_or_case",
                       "documents_judged_for_several_questions", "same_text_twice_for_one_question", "queries", "queries_without_a_positive_judgment",
                       "qrels", "grade_0", "grade_1", "grade_2", "grade_3"), 0)
    docs: dict[str, dict[str, Any]] = {}
    seen_qids: dict[str, str] = {}
    for split, q in questions:
        c["questions"] += 1
        qid, text = _text(q.get("qid")), _text(q.get("question"))
        if not qid or not text:
            c["questions_without_text"] += 1
            out.notes.append(f"{split}: question {qid or c['questions']!r} has no id or no text; skipped")
            continue
        if qid in seen_qids:
            raise DevSetError(f"{split}: question id {qid!r} already used in {seen_qids[qid]}")
        seen_qids[qid] = split
        judged: dict[str, int] = {}
        for position, a in enumerate(q.get("answers") or [], start=1):
            c["answers"] += 1
            answer, score, aid = _text(a.get("text")), a.get("reference_score"), _text(a.get("aid"))
            if not answer:
                c["answers_with_empty_text"] += 1
                out.notes.append(f"{qid} answer {aid or position}: empty text; skipped")
                continue
            if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 4:
                c["answers_with_a_bad_score"] += 1
                out.notes.append(f"{qid} answer {aid or position}: reference_score {score!r} is not 1-4; skipped")
                continue
            key = text_key(answer)
            doc = docs.get(key)
            if doc is None:
                label = _MEDIQA_LABEL.match(answer)
                doc = docs[key] = {"_id": f"{qid}-a{position}", "title": label.group(1).strip() if label else "", "text": answer,
                                   "texts": set(), "answers": [], "urls": [], "questions": []}
            else:
                c["answers_merged_into_an_earlier_document"] += 1
            doc["texts"].add(answer)
            doc["answers"].append(f"{qid}/{aid or position}")
            doc["urls"].append(_text(a.get("url")))
            grade = score - 1
            if doc["_id"] in judged:
                c["same_text_twice_for_one_question"] += 1
                out.notes.append(f"{qid}: answer {aid or position} repeats the text of {doc['_id']}; graded {max(grade, judged[doc['_id']])} (the higher)")
                judged[doc["_id"]] = max(grade, judged[doc["_id"]])
            else:
                judged[doc["_id"]] = grade
                doc["questions"].append(qid)
        if not judged:
            out.notes.append(f"{qid}: no usable answer; not a query")
            continue
        if not any(judged.values()):
            c["queries_without_a_positive_judgment"] += 1
        out.queries.append({"_id": qid, "text": text, "metadata": {"split": split}})
        for doc_id, grade in judged.items():
            out.qrels.append((qid, doc_id, grade))
            c[f"grade_{grade}"] += 1
    for doc in docs.values():
        c["documents_merged_from_texts_differing_in_spacing_or_case"] += len(doc["texts"]) > 1
        c["documents_judged_for_several_questions"] += len(doc["questions"]) > 1
        out.corpus.append({"_id": doc["_id"], "title": doc["title"], "text": doc["text"],
                           "metadata": {"source": "MEDIQA 2019 task 3", "answers": doc["answers"], "urls": _distinct(doc["urls"])}})
    c["documents"] = len(out.corpus)
    c["queries"] = len(out.queries)
    c["qrels"] = len(out.qrels)
    out.counts = c
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_medicationqa(data: Path, titles: str = "focus") -> DevSet:
    path = Path(data) / MEDICATIONQA_FILE
    devset = build_medicationqa((row for _, row in read_jsonl(path)), titles)
    devset.sources = {str(MEDICATIONQA_FILE): _sha256(path)}
    return devset


def load_mediqa(data: Path) -> DevSet:
    files = [(split, Path(data) / MEDIQA_DIR / f"{split}.jsonl") for split in MEDIQA_SPLITS]
    questions = [(split, row) for split, path in files for _, row in read_jsonl(path)]
    devset = build_mediqa(questions)
    devset.sources = {str(MEDIQA_DIR / path.name): _sha256(path) for _, path in files}
    return devset


def write_beir(devset: DevSet, directory: Path) -> Path:
    """corpus.jsonl, queries.jsonl, qrels/test.tsv and devset.json (counts, notes, input digests)."""
    directory = Path(directory)
    (directory / "qrels").mkdir(parents=True, exist_ok=True)

    def lines(path: Path, rows: Iterable[str]) -> None:
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(row + "\n")

    lines(directory / "corpus.jsonl", (json.dumps(d, ensure_ascii=False) for d in devset.corpus))
    lines(directory / "queries.jsonl", (json.dumps(q, ensure_ascii=False) for q in devset.queries))
    lines(directory / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{g}" for q, d, g in devset.qrels)])
    summary = {"name": devset.name, "counts": devset.counts, "notes": devset.notes, "sources": devset.sources,
               "built_by": "python -m evals.public_devsets"}
    lines(directory / "devset.json", [json.dumps(summary, ensure_ascii=False, indent=2)])
    return directory


BUILDERS = {"medicationqa": (load_medicationqa, MEDICATIONQA_FILE), "mediqa": (load_mediqa, MEDIQA_DIR)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding medicationqa/ and mediqa2019-qa/ (default ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path("var/devsets"), help="where the dev sets are written (one folder each)")
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append", help="build only this set (repeatable)")
    parser.add_argument("--medicationqa-titles", choices=TITLES, default="focus",
                        help="MedicationQA document titles: focus (the drug) and section title, written as medicationqa (default); "
                             "or the section title alone, written as medicationqa-section-titles")
    args = parser.parse_args(argv)
    status = 0
    for name in args.only or list(BUILDERS):
        load, source = BUILDERS[name]
        if not (args.data / source).exists():
            print(f"{name}: {args.data / source} not found; not built", file=sys.stderr)
            status = 2
            continue
        try:
            devset = load(args.data, args.medicationqa_titles) if name == "medicationqa" else load(args.data)
        except (OSError, DevSetError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 2
            continue
        where = write_beir(devset, args.out / devset.name)
        print(f"{devset.name}: wrote {where} ({devset.counts['documents']} documents, {devset.counts['queries']} queries, {devset.counts['qrels']} judgments)")
        for key, value in devset.counts.items():
            print(f"  {key}: {value}")
        for note in devset.notes:
            print(f"  note: {note}")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation sets: queries and graded judgments, from a BEIR-layout folder or the project's gold set.

A judgment names the unit that answers a query: an article id (BEIR documents are
articles) or a section id ('<article id>#<section slug>'). Chunk hits are collapsed to
that unit before scoring.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from indexer.articles import load_corpus
from indexer.chunking import section_ids

LEVELS = ("article", "section")


class EvalSetError(ValueError):
    """An evaluation set that cannot be read; the message names the file and line."""


@dataclass
class EvalSet:
    name: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    level: str  # "article" | "section"
    context: dict[str, list[str]] = field(default_factory=dict)  # query id -> earlier turns of a conversation
    tags: dict[str, list[str]] = field(default_factory=dict)
    corpus_dirs: list[Path] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)

    def judged_queries(self) -> list[str]:
        """Queries with at least one judgment, in a stable order."""
        return sorted(q for q in self.queries if self.qrels.get(q))

    def limit(self, n: int | None) -> "EvalSet":
        if not n:
            return self
        keep = set(self.judged_queries()[:n])
        return EvalSet(self.name, {q: t for q, t in self.queries.items() if q in keep}, {q: j for q, j in self.qrels.items() if q in keep},
                       self.level, {q: c for q, c in self.context.items() if q in keep}, {q: t for q, t in self.tags.items() if q in keep},
                       self.corpus_dirs, self.source)

    def subset(self, keep: list[str]) -> "EvalSet":
        """The same set with only the queries `keep`."""
        k = set(keep)
        return EvalSet(self.name, {q: t for q, t in self.queries.items() if q in k}, {q: j for q, j in self.qrels.items() if q in k},
                       self.level, {q: c for q, c in self.context.items() if q in k}, {q: t for q, t in self.tags.items() if q in k},
                       self.corpus_dirs, self.source)

    def at_article_level(self) -> "EvalSet":
        """The same set with section judgments lifted to their article (highest grade wins)."""
        if self.level == "article":
            return self
        qrels: dict[str, dict[str, int]] = {}
        for q, judged in self.qrels.items():
            lifted: dict[str, int] = {}
            for unit, grade in judged.items():
                article = unit.split("#", 1)[0]
                lifted[article] = max(grade, lifted.get(article, 0))
            qrels[q] = lifted
        return EvalSet(self.name, self.queries, qrels, "article", self.context, self.tags, self.corpus_dirs, self.source)


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise EvalSetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return rows


def load_beir(directory: Path, queries_file: Path | None = None, qrels_file: Path | None = None, split: str = "test") -> EvalSet:
    """A BEIR-layout dataset: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (query-id, corpus-id, score)."""
    directory = Path(directory)
    queries_path = Path(queries_file) if queries_file else directory / "queries.jsonl"
    qrels_path = Path(qrels_file) if qrels_file else directory / "qrels" / f"{split}.tsv"
    corpus = directory / "corpus.jsonl"
    if not corpus.exists() and (directory / "corpus.jsonl.gz").exists():
        corpus = directory / "corpus.jsonl.gz"
    for path in (corpus, queries_path, qrels_path):
        if not path.exists():
            raise EvalSetError(f"{path}: missing (a BEIR dataset has corpus.jsonl, queries.jsonl and qrels/{split}.tsv)")
    queries: dict[str, str] = {}
    context: dict[str, list[str]] = {}
    tags: dict[str, list[str]] = {}
    for number, row in _read_jsonl(queries_path):
        if "_id" not in row or "text" not in row:
            raise EvalSetError(f"{queries_path}:{number}: a query needs _id and text")
        queries[str(row["_id"])] = str(row["text"])
        history = (row.get("metadata") or {}).get("context")
        if history:
            context[str(row["_id"])] = [str(t) for t in history]
        labels = (row.get("metadata") or {}).get("tags")
        if labels:
            tags[str(row["_id"])] = [str(t) for t in labels]
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as fh:
        for number, fields in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not fields or (number == 1 and fields[0].strip().lower() in ("query-id", "query_id", "qid", "query")):
                continue  # blank line or the header row
            if len(fields) < 3:
                raise EvalSetError(f"{qrels_path}:{number}: expected query-id, corpus-id, score")
            qid, doc, grade = fields[0].strip(), fields[1].strip(), fields[-1].strip()
            try:
                qrels.setdefault(qid, {})[doc] = int(grade)
            except ValueError:
                raise EvalSetError(f"{qrels_path}:{number}: score {grade!r} is not a whole number") from None
    unknown = sorted(set(qrels) - set(queries))
    notes = {}
    if unknown:
        # Judgments for queries the queries file lacks cannot be run; say so, and score the rest.
        notes["dropped_judged_queries"] = f"{len(unknown)} judged query id(s) not in {queries_path.name}, e.g. {unknown[0]!r}"
        for q in unknown:
            del qrels[q]
    return EvalSet(name=directory.name, queries=queries, qrels=qrels, level="article", context=context, tags=tags,
                   source={"kind": "beir", "dataset": str(directory), "queries": str(queries_path), "qrels": str(qrels_path), **notes})


def load_gold(gold_dir: Path, corpus_dirs: list[Path]) -> EvalSet:
    """The project's gold questions: evals/gold/*.jsonl, one question a line:

        {"id": "g001", "query": "causes of microcytosis", "tags": ["keyword"],
         "judgments": [{"section": "chronic-microcytosis-causes > From the Guidelines > Causes of Chronic Microcytosis", "grade": 2},
                       {"article": "thalassemia-trait-diagnosis", "grade": 1}]}

    A section is named by its article id and heading path; it must exist in the corpus, so a
    renamed heading fails here loudly instead of silently scoring zero. An article judgment
    counts for every section of that article at that grade.
    """
    loaded = load_corpus(corpus_dirs)
    if loaded.problems:
        raise EvalSetError(f"the corpus has errors; fix them first: {loaded.problems[0]}")
    by_path: dict[tuple[str, ...], str] = {}
    sections_of: dict[str, list[str]] = {}
    for article in loaded.articles:
        ids = section_ids(article)
        sections_of[article.id] = ids
        for section, sid in zip(article.sections, ids):
            by_path[(article.id, *section.path)] = sid
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    tags: dict[str, list[str]] = {}
    files = sorted(Path(gold_dir).glob("*.jsonl"))
    if not files:
        raise EvalSetError(f"{gold_dir}: no *.jsonl gold files")
    for path in files:
        for number, row in _read_jsonl(path):
            where = f"{path}:{number}"
            qid, query = row.get("id"), row.get("query")
            if not qid or not query:
                raise EvalSetError(f"{where}: a gold question needs id and query")
            if qid in queries:
                raise EvalSetError(f"{where}: duplicate question id {qid!r}")
            judged: dict[str, int] = {}
            for j in row.get("judgments") or []:
                grade = j.get("grade")
                if not isinstance(grade, int) or grade < 0:
                    raise EvalSetError(f"{where}: grade must be a whole number >= 0")
                if "section" in j:
                    key = tuple(part.strip() for part in j["section"].split(">"))
                    if key not in by_path:
                        raise EvalSetError(f"{where}: no section {j['section']!r} in the corpus")
                    units = [by_path[key]]
                elif "article" in j:
                    if j["article"] not in sections_of:
                        raise EvalSetError(f"{where}: no article {j['article']!r} in the corpus")
                    units = sections_of[j["article"]]
                else:
                    raise EvalSetError(f"{where}: a judgment names a section or an article")
                for unit in units:
                    judged[unit] = max(grade, judged.get(unit, 0))
            if not any(g > 0 for g in judged.values()):
                raise EvalSetError(f"{where}: question {qid!r} has no positive judgment")
            queries[qid], qrels[qid], tags[qid] = str(query), judged, list(row.get("tags") or [])
    return EvalSet(name="gold", queries=queries, qrels=qrels, level="section", tags=tags, corpus_dirs=list(corpus_dirs),
                   source={"kind": "gold", "gold": str(gold_dir), "corpus": ":".join(map(str, corpus_dirs))})


NOMATCH_KINDS = ("off-topic", "gibberish", "near-miss")


@dataclass(frozen=True)
class NoMatchQuery:
    """A question the corpus cannot answer (evals/nomatch): nothing should be returned as its answer."""

    id: str
    query: str
    kind: str  # one of NOMATCH_KINDS


def load_nomatch(path: Path) -> list[NoMatchQuery]:
    """No-match questions from a JSON Lines file (or a folder holding queries.jsonl), one a line:

        {"id": "nm001", "query": "first-line topical treatment for acne", "kind": "off-topic"}

    kind is off-topic, gibberish or near-miss. A missing field, an unknown kind or a repeated
    id is an EvalSetError naming the file and line. The order of the file is kept."""
    path = Path(path)
    if path.is_dir():
        path = path / "queries.jsonl"
    if not path.exists():
        raise EvalSetError(f"{path}: missing (no-match questions are a JSON Lines file of id, query, kind)")
    out: list[NoMatchQuery] = []
    seen: set[str] = set()
    for number, row in _read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise EvalSetError(f"{where}: expected a JSON object")
        qid, query, kind = row.get("id"), row.get("query"), row.get("kind")
        if not isinstance(qid, str) or not qid.strip() or not isinstance(query, str) or not query.strip():
            raise EvalSetError(f"{where}: a no-match question needs a non-empty id and query")
        if kind not in NOMATCH_KINDS:
            raise EvalSetError(f"{where}: kind {kind!r} is not one of {', '.join(NOMATCH_KINDS)}")
        if qid in seen:
            raise EvalSetError(f"{where}: duplicate id {qid!r}")
        seen.add(qid)
        out.append(NoMatchQuery(qid, query, kind))
    if not out:
        raise EvalSetError(f"{path}: no questions")
    return out

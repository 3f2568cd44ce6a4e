"""Cited answers: from ranked passages to key points, grouped passages and one numbered
reference list.

Citation numbers are renumbered across the whole answer, so [1] names the same reference
in every key point and passage. No sentence is shown without its citation; a passage from
an article that lists no references says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.chunking import Chunk, sentence_spans
from indexer.citations import CITATION_RE, expand, format_citation
from indexer.lexical import tokenize
from server.search import Filters, SearchResult, SearchService

GROUPS = (("guidelines", "From the Guidelines"), ("research", "From the Research"), ("other", "Other sources"))
_GROUP_OF_PART = {"from the guidelines": "guidelines", "from the research": "research"}


@dataclass
class AnswerReference:
    number: int
    kind: str
    title: str
    source: str
    year: int | None
    identifiers: dict[str, str | None]
    authors: list[str]
    article_id: str
    article_title: str
    original_number: int
    unresolved: bool = False


@dataclass
class KeyPoint:
    text: str
    citations: list[int]
    article_id: str
    section_path: list[str]
    chunk_id: str
    note: str | None = None


@dataclass
class AnswerPassage:
    rank: int
    score: float
    chunk_id: str
    article_id: str
    article_title: str
    section_path: list[str]
    text: str
    citations: list[int]
    review_status: str
    last_updated: str | None
    note: str | None = None


@dataclass
class ArticleStatus:
    id: str
    title: str
    review_status: str
    last_updated: str | None


@dataclass
class CitedAnswer:
    question: str
    resolved_query: str
    key_points: list[KeyPoint]
    groups: dict[str, list[AnswerPassage]]
    references: list[AnswerReference]
    articles: list[ArticleStatus]
    related_questions: list[str]
    all_approved: bool
    took_ms: float = 0.0
    signals: dict[str, Any] = field(default_factory=dict)


class _Numbering:
    """One number per (article, reference) across the answer, in order of first use."""

    def __init__(self, service: SearchService):
        self.service = service
        self.numbers: dict[tuple[str, int], int] = {}
        self.references: list[AnswerReference] = []

    def number(self, chunk: Chunk, local: int) -> int:
        key = (chunk.article_id, local)
        if key not in self.numbers:
            self.numbers[key] = len(self.numbers) + 1
            ref = next((r for r in chunk.references if r["id"] == local), None)
            if ref is None:
                article = self.service.index.articles.get(chunk.article_id, {})
                ref = next((r for r in article.get("references", []) if r["id"] == local), None)
            if ref is None:
                self.references.append(AnswerReference(self.numbers[key], "unresolved", "The source article lists no reference for this number", "", None,
                                                       {}, [], chunk.article_id, chunk.article_title, local, unresolved=True))
            else:
                self.references.append(AnswerReference(self.numbers[key], ref["kind"], ref["title"], ref["source"], ref.get("year"),
                                                       {k: ref.get(k) for k in ("pmid", "doi", "url")}, ref.get("authors", []),
                                                       chunk.article_id, chunk.article_title, local))
        return self.numbers[key]

    def renumber(self, chunk: Chunk, text: str) -> tuple[str, list[int]]:
        """`text` with its citations in answer-wide numbers, and those numbers."""
        used: list[int] = []

        def swap(m: re.Match) -> str:
            numbers = [self.number(chunk, n) for n in expand(m.group(1))]
            used.extend(n for n in numbers if n not in used)
            return format_citation(numbers)

        return CITATION_RE.sub(swap, text), used


def _group(chunk: Chunk) -> str:
    part = chunk.section_path[0].lower() if chunk.section_path else ""
    if part in _GROUP_OF_PART:
        return _GROUP_OF_PART[part]
    if "guideline" in chunk.evidence_kinds:
        return "guidelines"
    if "research" in chunk.evidence_kinds:
        return "research"
    return "other"


def _no_references(service: SearchService, chunk: Chunk) -> bool:
    return not service.index.articles.get(chunk.article_id, {}).get("references")


def key_point_candidates(service: SearchService, results: list[SearchResult], limit_passages: int) -> list[tuple[SearchResult, str]]:
    """Sentences of the top passages that can be shown: each carries a citation, unless its
    article lists no references at all (then it is shown with a note saying so)."""
    out = []
    for r in results[:limit_passages]:
        bare = _no_references(service, r.chunk)
        for start, end in sentence_spans(r.chunk.text):
            sentence = r.chunk.text[start:end].strip()
            if len(sentence.split()) < 4:
                continue
            if CITATION_RE.search(sentence) or bare:
                out.append((r, sentence))
    return out


def build_answer(service: SearchService, question: str, resolved: str, k: int = 8, filters: Filters = Filters(),
                 max_key_points: int = 5, key_point_passages: int = 8) -> CitedAnswer:
    """Search with the resolved question and assemble the cited answer."""
    response = service.search(resolved, k, filters)
    results = response.results
    numbering = _Numbering(service)

    key_points: list[KeyPoint] = []
    candidates = key_point_candidates(service, results, key_point_passages)
    if candidates:
        query_vector = service.embed_query(response.expanded_query)
        vectors = service.embedder.encode_documents([CITATION_RE.sub("", s) for _, s in candidates])
        # Relevance of the sentence: its meaning, the words of the question as asked in it (so the
        # follow-up "how is it treated?" prefers sentences about treatment over sentences that only
        # name the conversation's topic), and its passage's rank.
        query_terms = set(tokenize(question))
        overlap = np.array([len(query_terms & set(tokenize(s))) / max(len(query_terms), 1) for _, s in candidates])
        scores = vectors @ query_vector + 0.15 * overlap + np.array([0.05 / r.rank for r, _ in candidates])
        chosen: list[int] = []
        for i in np.argsort(-scores, kind="stable"):
            if len(chosen) >= max_key_points:
                break
            if any(float(vectors[i] @ vectors[j]) > 0.92 for j in chosen):
                continue  # near-duplicate of a point already made
            chosen.append(int(i))
        for i in chosen:
            r, sentence = candidates[i]
            text, cites = numbering.renumber(r.chunk, sentence)
            note = "The source article lists no references." if not cites else None
            key_points.append(KeyPoint(text, cites, r.chunk.article_id, r.chunk.section_path, r.chunk.id, note))

    groups: dict[str, list[AnswerPassage]] = {name: [] for name, _ in GROUPS}
    for r in results:
        text, cites = numbering.renumber(r.chunk, r.chunk.text)
        note = "This passage's article lists no references." if _no_references(service, r.chunk) else None
        groups[_group(r.chunk)].append(AnswerPassage(r.rank, round(r.score, 6), r.chunk.id, r.chunk.article_id, r.chunk.article_title,
                                                     r.chunk.section_path, text, cites, r.chunk.review_status, r.chunk.last_updated, note))

    articles: list[ArticleStatus] = []
    for r in results:
        if all(a.id != r.chunk.article_id for a in articles):
            articles.append(ArticleStatus(r.chunk.article_id, r.chunk.article_title, r.chunk.review_status, r.chunk.last_updated))

    return CitedAnswer(
        question=question,
        resolved_query=resolved,
        key_points=key_points,
        groups=groups,
        references=sorted(numbering.references, key=lambda ref: ref.number),
        articles=articles,
        related_questions=related_questions(service, articles, response.expanded_query),
        all_approved=bool(articles) and all(a.review_status == "approved" for a in articles),
        took_ms=response.took_ms,
    )


def related_questions(service: SearchService, articles: list[ArticleStatus], query: str, nearest: int = 3, own: int = 5) -> list[str]:
    """The answer's articles' own related questions, then the titles of the nearest other articles."""
    shown = {a.id for a in articles}
    titles = {a.title.lower() for a in articles}
    out: list[str] = []
    for a in articles:
        for q in service.index.articles.get(a.id, {}).get("related_questions", []):
            if q.lower() not in titles and q not in out:
                out.append(q)
    out = out[:own]
    best: dict[str, float] = {}
    for s, sim in service.section_scores(service.embed_query(query), 200):
        article_id = service.index.sections.ids[s].split("#", 1)[0]
        if article_id not in shown and sim > best.get(article_id, -1.0):
            best[article_id] = sim
    for article_id, _ in sorted(best.items(), key=lambda item: (-item[1], item[0]))[:nearest]:
        title = service.index.articles.get(article_id, {}).get("title")
        if title and title not in out:
            out.append(title)
    return out

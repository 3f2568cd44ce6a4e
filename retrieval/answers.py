"""Cited answers: from ranked passages to key points, grouped passages and one numbered
reference list.

Citation numbers are renumbered across the whole answer, so [1] names the same reference
in every key point and passage. No sentence is shown without its citation; a passage from
an article that lists no references says so.

Answer building talks to the search engine only through `AnswerSource`: it never reaches
into the index or the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from indexer.chunking import Chunk, sentence_spans
from indexer.citations import CITATION_RE, expand, format_citation
from indexer.index_store import ArticleRecord
from indexer.lexical import tokenize
from indexer.vocabulary import EvidenceKind, Reference, ReviewStatus
from retrieval.aspects import aspect_of, aspects_in
from retrieval.search import Filters, Hit, SearchResult

# The seed page's grouping of passages, in the order shown.
GROUPS = (("guidelines", "From the Guidelines"), ("research", "From the Research"), ("other", "Other sources"))
_GROUP_OF_PART = {"from the guidelines": "guidelines", "from the research": "research"}


class AnswerSource(Protocol):
    """What answer building needs from the search engine (SearchService provides it)."""

    def search(self, query: str, k: int = 10, filters: Filters = Filters()) -> SearchResult: ...

    def embed_query(self, query: str) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def article(self, article_id: str) -> ArticleRecord | None: ...

    def nearest_articles(self, query: str, n: int, exclude: set[str] = frozenset()) -> list[tuple[str, float]]: ...


@dataclass(frozen=True)
class NumberedReference:
    """A reference in the answer's one numbered list. `reference` is None when the source
    article cites a number it lists no reference for (shown as unresolved, never dropped)."""

    number: int
    reference: Reference | None
    article_id: str
    article_title: str
    original_number: int


@dataclass
class KeyPoint:
    """One sentence that answers the question, with its citations in answer-wide numbers."""

    text: str
    citations: list[int]
    hit: Hit
    note: str | None = None


@dataclass
class AnswerPassage:
    """A ranked passage as the answer shows it: its text with answer-wide citation numbers."""

    hit: Hit
    group: str  # one of GROUPS' names
    text: str
    citations: list[int]
    note: str | None = None


@dataclass
class CitedAnswer:
    """Everything an answer shows: key points, passages grouped as the seed page groups them,
    one reference list, the articles drawn on (with their review status), related questions."""

    question: str
    resolved_query: str
    key_points: list[KeyPoint]
    passages: list[AnswerPassage]
    references: list[NumberedReference]
    articles: list[ArticleRecord]
    related_questions: list[str]
    took_ms: float = 0.0
    no_match: str | None = None  # why nothing answers (then no key points, no passages)
    searched_for: str | None = None  # the words searched, when they differ from the question as typed

    @property
    def all_approved(self) -> bool:
        return bool(self.articles) and all(a.review_status == ReviewStatus.APPROVED for a in self.articles)

    def group(self, name: str) -> list[AnswerPassage]:
        return [p for p in self.passages if p.group == name]


class _Numbering:
    """One number per (article, reference) across the answer, in order of first use."""

    def __init__(self, source: AnswerSource):
        self.source = source
        self.numbers: dict[tuple[str, int], int] = {}
        self.references: list[NumberedReference] = []

    def number(self, chunk: Chunk, local: int) -> int:
        key = (chunk.article_id, local)
        if key not in self.numbers:
            self.numbers[key] = len(self.numbers) + 1
            ref = next((r for r in chunk.references if r.id == local), None)
            if ref is None:
                article = self.source.article(chunk.article_id)
                ref = article.reference(local) if article else None
            self.references.append(NumberedReference(self.numbers[key], ref, chunk.article_id, chunk.article_title, local))
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
    if EvidenceKind.GUIDELINE in chunk.evidence_kinds:
        return "guidelines"
    if EvidenceKind.RESEARCH in chunk.evidence_kinds:
        return "research"
    return "other"


def _no_references(source: AnswerSource, chunk: Chunk) -> bool:
    article = source.article(chunk.article_id)
    return article is None or not article.references


def key_point_candidates(source: AnswerSource, hits: list[Hit], limit_passages: int) -> list[tuple[Hit, str]]:
    """Sentences of the top passages that can be shown: each carries a citation, unless its
    article lists no references at all (then it is shown with a note saying so)."""
    out = []
    for hit in hits[:limit_passages]:
        bare = _no_references(source, hit.chunk)
        for start, end in sentence_spans(hit.chunk.text):
            sentence = hit.chunk.text[start:end].strip()
            if len(sentence.split()) < 4:
                continue
            if CITATION_RE.search(sentence) or bare:
                out.append((hit, sentence))
    return out


ASPECT_MATCH_BONUS = 0.12
OTHER_ASPECT_PENALTY = 0.08


ENOUGH_ON_ASPECT = 3


def aspect_bonus(question: str, candidates: list[tuple[Hit, str]]) -> np.ndarray:
    """Per candidate sentence: +ASPECT_MATCH_BONUS when it (or its section heading) addresses
    the question's aspect; when it speaks only of other aspects, -OTHER_ASPECT_PENALTY, or
    -inf (left out) once ENOUGH_ON_ASPECT sentences address the aspect asked; 0 when the
    question names no single aspect."""
    asked = aspect_of(question)
    out = np.zeros(len(candidates))
    if asked is None:
        return out
    spoken = [aspects_in(sentence) | aspects_in(" ".join(hit.chunk.section_path[1:])) for hit, sentence in candidates]
    enough = sum(asked in s for s in spoken) >= ENOUGH_ON_ASPECT
    for i, aspects in enumerate(spoken):
        if asked in aspects:
            out[i] = ASPECT_MATCH_BONUS
        elif aspects:
            out[i] = -np.inf if enough else -OTHER_ASPECT_PENALTY
    return out


def build_answer(source: AnswerSource, question: str, resolved: str, k: int = 8, filters: Filters = Filters(),
                 max_key_points: int = 5, key_point_passages: int = 8) -> CitedAnswer:
    """Search with the resolved question and assemble the cited answer."""
    result = source.search(resolved, k, filters)
    if result.no_match:
        # Nothing answers: say so, with the nearest articles' titles to try instead.
        return CitedAnswer(question=question, resolved_query=resolved, key_points=[], passages=[], references=[], articles=[],
                           related_questions=list(result.suggestions), took_ms=result.took_ms, no_match=result.no_match,
                           searched_for=result.searched_for)
    hits = result.hits
    numbering = _Numbering(source)

    key_points: list[KeyPoint] = []
    candidates = key_point_candidates(source, hits, key_point_passages)
    if candidates:
        query_vector = source.embed_query(result.expanded_query)
        vectors = source.embed_passages([CITATION_RE.sub("", s) for _, s in candidates])
        # Relevance of the sentence: its meaning, the words of the question as asked in it (so the
        # follow-up "how is it treated?" prefers sentences about treatment over sentences that only
        # name the conversation's topic), and its passage's rank.
        query_terms = set(tokenize(question))
        overlap = np.array([len(query_terms & set(tokenize(s))) / max(len(query_terms), 1) for _, s in candidates])
        scores = vectors @ query_vector + 0.15 * overlap + np.array([0.05 / hit.rank for hit, _ in candidates])
        # The aspect asked (treatment, cause, diagnosis, ...) steers the points: a sentence that
        # addresses it, in its words or its section's heading, beats one that only names the topic,
        # and a sentence about another aspect alone gives way.
        scores += aspect_bonus(question, candidates)
        chosen: list[int] = []
        for i in np.argsort(-scores, kind="stable"):
            if len(chosen) >= max_key_points or scores[i] == -np.inf:
                break
            if any(float(vectors[i] @ vectors[j]) > 0.92 for j in chosen):
                continue  # near-duplicate of a point already made
            chosen.append(int(i))
        for i in chosen:
            hit, sentence = candidates[i]
            text, cites = numbering.renumber(hit.chunk, sentence)
            note = "The source article lists no references." if not cites else None
            key_points.append(KeyPoint(text, cites, hit, note))

    passages: list[AnswerPassage] = []
    for hit in hits:
        text, cites = numbering.renumber(hit.chunk, hit.chunk.text)
        note = "This passage's article lists no references." if _no_references(source, hit.chunk) else None
        passages.append(AnswerPassage(hit, _group(hit.chunk), text, cites, note))
    order = {name: i for i, (name, _) in enumerate(GROUPS)}
    passages.sort(key=lambda p: (order[p.group], p.hit.rank))

    articles: list[ArticleRecord] = []
    for hit in hits:
        record = source.article(hit.chunk.article_id)
        if record is not None and all(a.id != record.id for a in articles):
            articles.append(record)

    return CitedAnswer(
        question=question,
        resolved_query=resolved,
        key_points=key_points,
        passages=passages,
        references=sorted(numbering.references, key=lambda ref: ref.number),
        articles=articles,
        related_questions=related_questions(source, articles, result.expanded_query),
        took_ms=result.took_ms,
        searched_for=result.searched_for,
    )


def related_questions(source: AnswerSource, articles: list[ArticleRecord], query: str, nearest: int = 3, own: int = 5) -> list[str]:
    """The answer's articles' own related questions, then the titles of the nearest other articles."""
    titles = {a.title.lower() for a in articles}
    out: list[str] = []
    for a in articles:
        for q in a.related_questions:
            if q.lower() not in titles and q not in out:
                out.append(q)
    out = out[:own]
    for article_id, _ in source.nearest_articles(query, nearest, exclude={a.id for a in articles}):
        record = source.article(article_id)
        if record and record.title not in out:
            out.append(record.title)
    return out

"""Cited answers: from ranked passages to key points, grouped passages and one numbered
reference list.

The aspect the question asks (treatment, cause, diagnosis, dose, ...) steers the answer
within the topic's articles first: passages of the topic that address the aspect are
shown first and the key points are their sentences that address it. Where nothing on the
topic addresses the aspect, the answer has no key points and says so ("No passage on the
treatment of X; the nearest passages are shown"), instead of presenting the topic's other
passages as the answer.

Citation numbers are renumbered across the whole answer, so [1] names the same reference
in every key point and passage. No sentence is shown without its citation; a passage from
an article that lists no references says so.

Answer building talks to the search engine only through `AnswerSource`: it never reaches
into the index or the model.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from indexer.chunking import Chunk, sentence_spans
from indexer.citations import CITATION_RE, expand, format_citation
from indexer.index_store import ArticleRecord
from indexer.lexical import tokenize
from indexer.vocabulary import CAUTION, EvidenceKind, Reference, ReviewStatus
from retrieval.aspects import aspect_of, aspects_in
from retrieval.followups import ACKNOWLEDGEMENT, NO_SUBJECT, QUESTION, topic_of
from retrieval.reviews import ArticleReview
from retrieval.search import Filters, Hit, RetrievalSettings, SearchResult

# The seed page's grouping of passages, in the order shown.
GROUPS = (("guidelines", "From the Guidelines"), ("research", "From the Research"), ("other", "Other sources"))
_GROUP_OF_PART = {"from the guidelines": "guidelines", "from the research": "research"}


class AnswerSource(Protocol):
    """What answer building needs from the search engine (SearchService provides it)."""

    def search(self, query: str, k: int = 10, filters: Filters = Filters(), settings: RetrievalSettings | None = None) -> SearchResult: ...

    def embed_query(self, query: str) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def article(self, article_id: str) -> ArticleRecord | None: ...

    def nearest_articles(self, query: str, n: int, exclude: set[str] = frozenset()) -> list[tuple[str, float]]: ...


@dataclass(frozen=True)
class CitingArticle:
    """An article that cites a reference of the answer, and the number it has there."""

    article_id: str
    article_title: str
    original_number: int


@dataclass(frozen=True)
class NumberedReference:
    """A reference in the answer's one numbered list. `reference` is None when the source
    article cites a number it lists no reference for (shown as unresolved, never dropped).

    One publication has one number however many of the answer's articles cite it (see
    `reference_keys`); `article_id`, `article_title` and `original_number` name the first
    article that cites it, `cited_in` every one (the first included), in order of first use."""

    number: int
    reference: Reference | None
    article_id: str
    article_title: str
    original_number: int
    cited_in: tuple[CitingArticle, ...] = ()


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


@dataclass(frozen=True)
class Coverage:
    """What an answer stands on: how many articles, how many of them approved, the most
    recent update among them, and how many of its cited sources were retracted."""

    articles: int
    approved: int
    latest_update: dt.date | None
    retracted: int

    @property
    def summary(self) -> str:
        parts = [f"Draws on {self.articles} article{'' if self.articles == 1 else 's'}, {self.approved} approved",
                 f"most recent update {self.latest_update.isoformat()}" if self.latest_update else "no update date given",
                 f"{self.retracted} cited source{' was' if self.retracted == 1 else 's were'} retracted" if self.retracted else "no cited source is retracted"]
        return "; ".join(parts) + "."


# How the answer names an aspect in "No passage on the treatment of X".
ASPECT_NOUNS = {"cause": "causes", "diagnosis": "diagnosis", "treatment": "treatment", "dose": "dosing", "prognosis": "prognosis",
                "prevention": "prevention", "risk": "risk factors", "symptoms": "symptoms", "interpretation": "interpretation"}
NOTHING_FOUND = "No passage in the knowledge base matches this question."
NOTHING_WITH_FILTERS = "No passage matches this question with the filters chosen; try it without them."
NO_SUBJECT_MESSAGE = ("This question does not say what it is about, and there is no earlier question to take its subject from: "
                      "ask it with its subject, e.g. \u201chow is iron deficiency treated?\u201d.")


@dataclass
class CitedAnswer:
    """Everything an answer shows: key points, passages grouped as the seed page groups them,
    one reference list, the articles drawn on (with their review status), related questions.

    `turn` says how the question was read (retrieval.followups.TURN_KINDS); an
    acknowledgement is not searched and has a `reply`; a question with no subject, or one
    nothing matches, has `no_match` and no key points. `aspect_note` says when the
    knowledge base has nothing on the aspect asked of the topic."""

    question: str
    resolved_query: str
    key_points: list[KeyPoint]
    passages: list[AnswerPassage]
    references: list[NumberedReference]
    articles: list[ArticleRecord]
    related_questions: list[str]
    took_ms: float = 0.0
    reviews: dict[str, ArticleReview] = field(default_factory=dict)  # review status of each article drawn on, derived at query time
    turn: str = QUESTION
    topic: str | None = None
    reply: str | None = None
    no_match: str | None = None  # why nothing answers (then no key points, no passages)
    searched_for: str | None = None  # the words searched, when they differ from the question as typed
    aspect: str | None = None
    aspect_note: str | None = None

    def _approved(self, article_id: str) -> bool:
        review = self.reviews.get(article_id)
        return review is not None and review.status == ReviewStatus.APPROVED

    @property
    def caution(self) -> str | None:
        """The caution line over the answer, from the review status of the articles whose text it
        shows (its passages; its key points are their sentences): None when it shows nothing (an
        acknowledgement, no subject, no match) or only approved articles' text; CAUTION when none
        of it is approved; for a mixed answer, how many of its articles and key points are not
        approved (CAUTION would say the approved part is not)."""
        shown = list(dict.fromkeys(p.hit.chunk.article_id for p in self.passages))
        pending = [a for a in shown if not self._approved(a)]
        if not pending:
            return None
        if len(pending) == len(shown):
            return CAUTION
        points = sum(1 for k in self.key_points if not self._approved(k.hit.chunk.article_id))
        articles = f"{len(pending)} of the {len(shown)} articles this answer draws on {'is' if len(pending) == 1 else 'are'} not approved by a clinician"
        if not self.key_points:
            where = ""
        elif points:
            where = f"; {points} of its {len(self.key_points)} key point{'' if len(self.key_points) == 1 else 's'} come{'s' if points == 1 else ''} from them"
        else:
            where = "; none of its key points comes from them"
        return f"Partly pending clinical review: {articles}{where}. Verify their content against the cited sources before use."

    @property
    def searched(self) -> bool:
        return self.turn not in (ACKNOWLEDGEMENT, NO_SUBJECT)

    @property
    def coverage(self) -> Coverage | None:
        """None for a turn that was not searched, and when nothing matched (no passage shown)."""
        if not self.searched or self.no_match or not self.passages:
            return None
        dates = [a.last_updated for a in self.articles if a.last_updated]
        approved = sum(1 for a in self.articles if a.id in self.reviews and self.reviews[a.id].status == ReviewStatus.APPROVED)
        retracted = sum(1 for r in self.references if r.reference is not None and r.reference.retracted)
        return Coverage(len(self.articles), approved, max(dates) if dates else None, retracted)

    def group(self, name: str) -> list[AnswerPassage]:
        return [p for p in self.passages if p.group == name]


def reference_keys(ref: Reference) -> list[tuple[str, ...]]:
    """What identifies the publication a reference names: its PMID, DOI and URL (normalised:
    a DOI's case and resolver prefix, a URL's scheme and trailing slash do not count), and
    only when it has none of them, its title, source and year (case, punctuation and spacing
    ignored). Two references sharing any key are the same publication."""
    keys: list[tuple[str, ...]] = []
    if ref.pmid and ref.pmid.strip():
        keys.append(("pmid", ref.pmid.strip()))
    if ref.doi and ref.doi.strip():
        keys.append(("doi", re.sub(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)", "", ref.doi.strip().lower())))
    if ref.url and ref.url.strip():
        keys.append(("url", re.sub(r"^https?://(?:www\.)?", "", ref.url.strip().lower()).rstrip("/")))
    if not keys:
        def words(text: str) -> str:
            return " ".join(re.findall(r"\w+", text.casefold()))

        keys.append(("title", words(ref.title), words(ref.source), str(ref.year or "")))
    return keys


def merge_references(first: Reference, other: Reference) -> Reference:
    """One publication as two articles list it: `first`'s number, kind, title, source and
    year, the identifiers and authors it lacks taken from `other`, and both lists' notices (so
    a retraction either article records is shown)."""
    return replace(first, pmid=first.pmid or other.pmid, doi=first.doi or other.doi, url=first.url or other.url,
                   authors=first.authors or other.authors, notices=(*first.notices, *(n for n in other.notices if n not in first.notices)))


class _Numbering:
    """One number per publication across the answer, in order of first use: the same
    reference cited by two articles (the same PMID, DOI, URL, or title, source and year) is
    numbered once. An unresolved citation is numbered per (article, number)."""

    def __init__(self, source: AnswerSource):
        self.source = source
        self.numbers: dict[tuple[str, int], int] = {}  # (article, its number) -> the answer's number
        self.by_key: dict[tuple[str, ...], int] = {}  # a publication's key -> the answer's number
        self.references: list[NumberedReference] = []

    def number(self, chunk: Chunk, local: int) -> int:
        key = (chunk.article_id, local)
        if key in self.numbers:
            return self.numbers[key]
        ref = next((r for r in chunk.references if r.id == local), None)
        if ref is None:
            article = self.source.article(chunk.article_id)
            ref = article.reference(local) if article else None
        citing = CitingArticle(chunk.article_id, chunk.article_title, local)
        keys = reference_keys(ref) if ref is not None else []
        known = next((self.by_key[k] for k in keys if k in self.by_key), None)
        if known is not None:
            entry = self.references[known - 1]
            merged = merge_references(entry.reference, ref) if entry.reference is not None else ref
            self.references[known - 1] = replace(entry, reference=merged, cited_in=(*entry.cited_in, citing))
            keys = reference_keys(merged)
            number = known
        else:
            number = len(self.references) + 1
            self.references.append(NumberedReference(number, ref, chunk.article_id, chunk.article_title, local, (citing,)))
        for k in keys:
            self.by_key.setdefault(k, number)
        self.numbers[key] = number
        return number

    def renumber(self, chunk: Chunk, text: str) -> tuple[str, list[int]]:
        """`text` with its citations in answer-wide numbers, and those numbers."""
        used: list[int] = []

        cited = set(chunk.citations) | set(chunk.unresolved_citations)

        def swap(m: re.Match) -> str:
            local = expand(m.group(1))
            if not set(local) <= cited:
                # Not one of the passage's citations (e.g. an escaped "\\[3]" in the source): text, left alone.
                return m.group(0)
            numbers = [self.number(chunk, n) for n in local]
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


def acknowledgement_answer(question: str, topic: str | None) -> CitedAnswer:
    """'thanks', 'ok': not searched, a short reply, the topic left as it was."""
    thanks = re.search(r"\b(?:thank|thanks|thx|ty|cheers|appreciate)", question, re.I)
    reply = "You're welcome." if thanks else "OK."
    reply += f" Follow-up questions stay on {topic}." if topic else " Ask a question whenever you like."
    return CitedAnswer(question=question, resolved_query="", key_points=[], passages=[], references=[], articles=[], related_questions=[],
                       turn=ACKNOWLEDGEMENT, topic=topic, reply=reply)


def no_subject_answer(question: str) -> CitedAnswer:
    """'what is it?' with nothing earlier to refer to: not searched, and said so."""
    return CitedAnswer(question=question, resolved_query="", key_points=[], passages=[], references=[], articles=[], related_questions=[],
                       turn=NO_SUBJECT, no_match=NO_SUBJECT_MESSAGE)


POOL_FACTOR = 3  # with an aspect to steer by, passages are chosen from this many times k
_PARTS = {"from the guidelines", "from the research", "text"}


def heading_aspects(chunk: Chunk) -> set[str]:
    """The aspects the passage's section headings speak of (the part names left out)."""
    return aspects_in(" ".join(p for p in chunk.section_path if p.lower() not in _PARTS))


def sentence_addresses(hit: Hit, sentence: str, aspect: str) -> bool:
    return aspect in aspects_in(sentence) or aspect in heading_aspects(hit.chunk)


def passage_addresses(hit: Hit, aspect: str) -> bool:
    if aspect in heading_aspects(hit.chunk):
        return True
    text = CITATION_RE.sub("", hit.chunk.text)
    return any(aspect in aspects_in(text[a:b]) for a, b in sentence_spans(text))


def topic_terms(topic: str) -> set[str]:
    return set(tokenize(topic))


def mentions_topic(chunk: Chunk, terms: set[str]) -> bool:
    """Most of the topic's words (stemmed) are in the passage, its title or its headings."""
    if not terms:
        return False
    words = set(tokenize(" ".join([chunk.article_title, *chunk.section_path, chunk.text])))
    return len(terms & words) >= max(1, -(-2 * len(terms) // 3))


def primary_article(source: AnswerSource, topic: str, filters: Filters) -> str | None:
    """The article a search for the topic alone ranks first."""
    hits = source.search(topic, 1, filters).hits
    return hits[0].chunk.article_id if hits else None


def on_topic(hit: Hit, primary: str | None, terms: set[str]) -> bool:
    """A passage of the topic's own article, or one that names the topic (in its text, headings or article title)."""
    return hit.chunk.article_id == primary or mentions_topic(hit.chunk, terms)


def build_answer(source: AnswerSource, question: str, resolved: str, k: int = 8, filters: Filters = Filters(),
                 max_key_points: int = 5, key_point_passages: int = 8, topic: str | None = None, turn: str = QUESTION) -> CitedAnswer:
    """Search with the resolved question and assemble the cited answer. `topic` is the
    conversation's topic (default: the resolved question's subject)."""
    topic = topic if topic is not None else topic_of(resolved)
    asked = aspect_of(question)
    terms = topic_terms(topic) if topic else set()
    steer = asked is not None and bool(terms)
    cap = 0
    if steer:
        # The pool is searched without the per-article cap, so that every passage of the topic's
        # articles on the aspect can come first; the cap applies to the passages after them.
        cfg: RetrievalSettings | None = getattr(source, "settings", None)
        cap = cfg.max_per_article if cfg is not None else 0
        result = source.search(resolved, max(k * POOL_FACTOR, k + 16), filters, **({"settings": replace(cfg, max_per_article=0)} if cap else {}))
    else:
        result = source.search(resolved, k, filters)
    common = dict(question=question, resolved_query=resolved, took_ms=result.took_ms, turn=turn, topic=topic, aspect=asked,
                  searched_for=getattr(result, "searched_for", None))
    no_match = getattr(result, "no_match", None)
    if not no_match and not result.hits:
        # The search found nothing (e.g. its filters admit no passage): an empty answer says so.
        no_match = NOTHING_WITH_FILTERS if filters.active() else NOTHING_FOUND
    if no_match:
        # Nothing answers: say so, with the nearest articles' titles to try instead.
        return CitedAnswer(key_points=[], passages=[], references=[], articles=[], related_questions=list(getattr(result, "suggestions", [])),
                           no_match=no_match, **common)
    pool = result.hits
    hits = pool[:k]
    aspect_note = None
    on_aspect: list[Hit] | None = None  # the topic's passages on the aspect asked, when steering
    if steer:
        primary = primary_article(source, topic, filters)
        on_aspect = [h for h in pool if on_topic(h, primary, terms) and passage_addresses(h, asked)]
        first = on_aspect[:k]
        if not first:
            aspect_note = f"No passage on the {ASPECT_NOUNS.get(asked, asked)} of {topic}; the nearest passages are shown."
        chosen = {h.chunk.id for h in first}
        per_article: dict[str, int] = {}
        for h in first:
            per_article[h.chunk.article_id] = per_article.get(h.chunk.article_id, 0) + 1
        rest = []
        for h in pool:
            if len(first) + len(rest) >= k:
                break
            if h.chunk.id in chosen or (cap and per_article.get(h.chunk.article_id, 0) >= cap):
                continue
            per_article[h.chunk.article_id] = per_article.get(h.chunk.article_id, 0) + 1
            rest.append(h)
        hits = first + rest
        for rank, hit in enumerate(hits, start=1):
            hit.rank = rank
    numbering = _Numbering(source)

    key_points: list[KeyPoint] = []
    if on_aspect is None:
        candidates = key_point_candidates(source, hits, key_point_passages)
    elif on_aspect:
        steered = {h.chunk.id for h in on_aspect}
        candidates = [(h, s) for h, s in key_point_candidates(source, hits, key_point_passages)
                      if h.chunk.id in steered and sentence_addresses(h, s, asked)]
    else:
        candidates = []  # nothing on the aspect asked: the nearest passages are not presented as its answer
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
        chosen_points: list[int] = []
        for i in np.argsort(-scores, kind="stable"):
            if len(chosen_points) >= max_key_points or scores[i] == -np.inf:
                break
            if any(float(vectors[i] @ vectors[j]) > 0.92 for j in chosen_points):
                continue  # near-duplicate of a point already made
            chosen_points.append(int(i))
        for i in chosen_points:
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
        key_points=key_points,
        passages=passages,
        references=sorted(numbering.references, key=lambda ref: ref.number),
        articles=articles,
        related_questions=related_questions(source, articles, result.expanded_query),
        reviews={a: r for a, r in result.reviews.items() if any(h.chunk.article_id == a for h in hits)},
        aspect_note=aspect_note,
        **common,
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

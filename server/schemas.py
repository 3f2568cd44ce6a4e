"""Request and response models: what clients send and see, kept apart from internal
types so nothing internal leaks. Enumerations come from the one vocabulary.

One meaning per name across the API: `review_status`, `evidence_kind`, `audience` and
`updated_since` filter both endpoints; `citations` is always the list of citation
numbers a text carries; `references` the full references those numbers name.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from indexer.vocabulary import Audience, EvidenceKind, NoticeType, ReviewStatus

RETRACTED_DESCRIPTION = ("Passages citing a retracted source: ranked below all others (demote, the default), "
                         "ranked by score (include), or left out (exclude).")
SCORE_DESCRIPTION = ("Ranking score; its meaning depends on the retriever (see `retriever`): dense = cosine similarity (-1..1), "
                     "lexical = BM25, hybrid = reciprocal rank fusion (sum over lists of weight / (60 + rank)). "
                     "Compare scores within one response only.")


class Identifiers(BaseModel):
    pmid: str | None = None
    doi: str | None = None
    url: str | None = None


class NoticeOut(BaseModel):
    type: NoticeType = Field(description="retracted, expression_of_concern, erratum or retraction_notice.")
    pmid: str | None = None
    citation: str | None = None
    note: str | None = None


class ReferenceOut(BaseModel):
    number: int = Field(description="The citation number used in the text, e.g. 2 for [2].")
    kind: EvidenceKind
    title: str
    source: str
    year: int | None = None
    authors: list[str] = []
    identifiers: Identifiers
    notices: list[NoticeOut] = Field(default=[], description="Published notices about this source (retraction, expression of concern, erratum).")
    retracted: bool = Field(default=False, description="A notice says this source was retracted.")


class PassageBase(BaseModel):
    """What every passage shows, in search results and in answers."""

    rank: int
    score: float = Field(description=SCORE_DESCRIPTION)
    chunk_id: str
    section_id: str
    article_id: str
    article_title: str
    section_path: list[str]
    text: str
    citations: list[int] = Field(description="The citation numbers in `text`, in order of first use.")
    review_status: ReviewStatus
    review_status_label: str
    caution: str | None = Field(description="Present whenever the article is not approved.")
    retraction_warning: str | None = Field(default=None, description="Present whenever the passage cites a retracted source.")
    last_updated: dt.date | None
    audience: Audience
    evidence_kinds: list[EvidenceKind]


class PassageOut(PassageBase):
    references: list[ReferenceOut] = Field(description="The references `citations` name, resolved from the passage's article.")
    unresolved_citations: list[int] = Field(description="Citation numbers the source article lists no reference for.")


class IndexInfo(BaseModel):
    build: str
    model: str


class SearchOut(BaseModel):
    query: str
    retriever: str = Field(description="dense, lexical or hybrid: what `score` means.")
    k: int
    took_ms: float
    total_chunks: int
    results: list[PassageOut]
    index: IndexInfo
    searched_for: str | None = Field(default=None, description="The words searched, when they differ from the query as typed (a spelling correction, a long message condensed).")
    no_match: str | None = Field(default=None, description="Why there are no results: nothing in the knowledge base answers the query.")
    suggestions: list[str] = Field(default=[], description="With no_match: the titles of the nearest articles.")


class ErrorDetail(BaseModel):
    location: str
    message: str


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorOut(BaseModel):
    error: ErrorInfo


class HealthOut(BaseModel):
    status: str
    chunks: int
    articles: int
    build: str
    model: str


class FiltersIn(BaseModel):
    model_config = {"extra": "forbid"}

    review_status: list[ReviewStatus] = Field(default=[], description="Only articles with these review statuses.")
    evidence_kind: list[EvidenceKind] = Field(default=[], description="Only passages citing these evidence kinds.")
    audience: list[Audience] = Field(default=[], description="Only articles for this audience ('both' matches either).")
    updated_since: dt.date | None = Field(default=None, description="Only articles updated on or after this date (YYYY-MM-DD).")
    retracted: Literal["demote", "include", "exclude"] = Field(default="demote", description=RETRACTED_DESCRIPTION)


class AskIn(BaseModel):
    model_config = {"extra": "forbid"}

    question: str = Field(description="The question; a follow-up may refer to earlier ones ('how is it treated?').")
    k: int | None = Field(default=None, description="Passages to draw the answer from.")
    filters: FiltersIn = FiltersIn()
    conversation_id: str | None = Field(default=None, description="Continue this conversation (from an earlier answer).")
    history: list[str] | None = Field(default=None, description="Earlier questions, oldest first, instead of a conversation_id.")


class AnswerReferenceOut(ReferenceOut):
    """A reference in an answer's one numbered list, with the article that cites it."""

    kind: EvidenceKind | None = Field(description="None for an unresolved reference.")
    article_id: str
    article_title: str
    original_number: int = Field(description="The number this reference has in its own article.")
    unresolved: bool = Field(default=False, description="The source article cites this number but lists no reference for it.")


class KeyPointOut(BaseModel):
    text: str
    citations: list[int] = Field(description="Numbers in the answer's reference list.")
    article_id: str
    section_path: list[str]
    chunk_id: str
    note: str | None = None


class AnswerPassageOut(PassageBase):
    """A passage of an answer; its `citations` are numbers in the answer's reference list."""

    note: str | None = None


class PassageGroupOut(BaseModel):
    name: str
    label: str
    passages: list[AnswerPassageOut]


class ArticleStatusOut(BaseModel):
    id: str
    title: str
    review_status: ReviewStatus
    review_status_label: str
    last_updated: dt.date | None


class AskOut(BaseModel):
    conversation_id: str
    question: str
    resolved_query: str = Field(description="The question as searched, with the conversation's context applied.")
    key_points: list[KeyPointOut]
    groups: list[PassageGroupOut] = Field(description="From the guidelines first, then from the research, then other sources.")
    references: list[AnswerReferenceOut]
    articles: list[ArticleStatusOut]
    caution: str | None = Field(description="Present whenever any content shown is not approved.")
    related_questions: list[str]
    took_ms: float
    no_match: str | None = Field(default=None, description="Why there is no answer: nothing in the knowledge base answers the question (no key points then).")
    searched_for: str | None = Field(default=None, description="The words searched, when they differ from the question as typed.")

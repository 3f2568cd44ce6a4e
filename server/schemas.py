"""Response models: what clients see, kept apart from internal types so nothing leaks."""

from __future__ import annotations

from pydantic import BaseModel, Field

STATUS_LABELS = {"submitted": "Submitted", "under_review": "Under review", "approved": "Approved"}
CAUTION = "Pending clinical review: this content has not been approved by a clinician. Verify it against the cited sources before use."


class Identifiers(BaseModel):
    pmid: str | None = None
    doi: str | None = None
    url: str | None = None


class ReferenceOut(BaseModel):
    number: int = Field(description="The citation number used in the passage text, e.g. 2 for [2].")
    kind: str
    title: str
    source: str
    year: int | None = None
    authors: list[str] = []
    identifiers: Identifiers


class PassageOut(BaseModel):
    rank: int
    score: float
    chunk_id: str
    section_id: str
    article_id: str
    article_title: str
    section_path: list[str]
    text: str
    citations: list[ReferenceOut] = Field(description="The references the passage cites, resolved.")
    unresolved_citations: list[int] = Field(description="Citation numbers the source article lists no reference for.")
    review_status: str
    review_status_label: str
    caution: str | None = Field(description="Present whenever the article is not approved.")
    last_updated: str | None
    audience: str
    evidence_kinds: list[str]


class IndexInfo(BaseModel):
    build: str
    model: str


class SearchOut(BaseModel):
    query: str
    k: int
    took_ms: float
    total_chunks: int
    results: list[PassageOut]
    index: IndexInfo


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

    review_status: list[str] = Field(default=[], description="Only these review statuses (submitted, under_review, approved).")
    evidence_kind: list[str] = Field(default=[], description="Only passages citing these evidence kinds (guideline, research, education).")
    audience: list[str] = Field(default=[], description="Only articles for this audience (clinician, patient, both).")
    updated_since: str | None = Field(default=None, description="Only articles updated on or after this date (YYYY-MM-DD).")


class AskIn(BaseModel):
    model_config = {"extra": "forbid"}

    question: str = Field(description="The question; a follow-up may refer to earlier ones ('how is it treated?').")
    k: int | None = Field(default=None, description="Passages to draw the answer from.")
    filters: FiltersIn = FiltersIn()
    conversation_id: str | None = Field(default=None, description="Continue this conversation (from an earlier answer).")
    history: list[str] | None = Field(default=None, description="Earlier questions, oldest first, instead of a conversation_id.")


class AnswerReferenceOut(ReferenceOut):
    """A reference in an answer's one numbered list, with the article that cites it."""

    article_id: str
    article_title: str
    original_number: int = Field(description="The number this reference has in its own article.")
    unresolved: bool = False


class KeyPointOut(BaseModel):
    text: str
    citations: list[int]
    article_id: str
    section_path: list[str]
    chunk_id: str
    note: str | None = None


class AnswerPassageOut(BaseModel):
    rank: int
    score: float
    chunk_id: str
    article_id: str
    article_title: str
    section_path: list[str]
    text: str
    citations: list[int]
    review_status: str
    review_status_label: str
    last_updated: str | None
    note: str | None = None


class PassageGroupOut(BaseModel):
    name: str
    label: str
    passages: list[AnswerPassageOut]


class ArticleStatusOut(BaseModel):
    id: str
    title: str
    review_status: str
    review_status_label: str
    last_updated: str | None


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

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

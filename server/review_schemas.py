"""Response and request models for review status, review history and decisions."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from indexer.vocabulary import ReviewStatus
from retrieval.reviews import ArticleReview, Decision, ReviewRecord, ReviewState


class ReviewerOut(BaseModel):
    name: str = Field(description="Account name.")
    display_name: str
    credentials: str = Field(description='e.g. "MD, haematology"; as they were when the decision was made.')


class ReviewOut(BaseModel):
    """An article's review status, derived from the review log and its current content."""

    state: ReviewState = Field(description="submitted, under_review, changes_requested, approved, approved_version_changed or retired.")
    label: str = Field(description='What the badge says, e.g. "Approved version changed, pending re-review".')
    note: str = Field(description='"Approved by NAME (credentials) on DATE", or why the article is pending.')
    approved: bool = Field(description="True only when the latest decision approves exactly the current content.")
    decided_by: ReviewerOut | None = Field(default=None, description="Who made the decision the state rests on.")
    decided_at: dt.datetime | None = None
    content_sha256: str = Field(description="SHA-256 of the article's current content (the file's bytes).")


class ReviewRecordOut(BaseModel):
    seq: int = Field(description="Position in the append-only log.")
    article_id: str
    content_sha256: str = Field(description="SHA-256 of the exact content this decision was about.")
    reviewer: ReviewerOut
    decided_at: dt.datetime
    decision: Decision
    decision_label: str
    comment: str
    current_content: bool = Field(description="This decision was about the article's current content.")


class ArticleOut(BaseModel):
    id: str
    title: str
    last_updated: dt.date | None
    path: str
    authors: list[str] = Field(description="Account names of the article's authors (they cannot approve it).")
    content_sha256: str
    review_status: ReviewStatus = Field(description="The derived status, as filters use it.")
    review_status_label: str
    claimed_status: ReviewStatus = Field(description="What the article's front matter says; only the review log counts.")
    review: ReviewOut
    history: list[ReviewRecordOut] = Field(description="Every decision about this article, oldest first.")
    diff_since_approved: str | None = Field(default=None, description="Unified diff from the last approved version to the current one, "
                                                                      "when an earlier version was approved and both texts are known.")


class ReviewIn(BaseModel):
    model_config = {"extra": "forbid"}

    decision: Decision = Field(description="start_review, approve, request_changes or retire.")
    content_sha256: str = Field(description="SHA-256 of the content reviewed: the article's `content_sha256` as read; 409 if it is no longer current.",
                                min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")
    comment: str = Field(default="", max_length=4000, description="Why; required to request changes or retire.")


class ReviewCreatedOut(BaseModel):
    review: ReviewRecordOut
    article: ArticleOut


def reviewer_out(record: ReviewRecord) -> ReviewerOut:
    r = record.reviewer
    return ReviewerOut(name=r.name, display_name=r.display_name, credentials=r.credentials)


def review_out(review: ArticleReview) -> ReviewOut:
    d = review.decision
    return ReviewOut(state=review.state, label=review.label, note=review.note, approved=review.approved,
                     decided_by=reviewer_out(d) if d else None, decided_at=d.decided_at if d else None,
                     content_sha256=review.content_sha256)


def record_out(record: ReviewRecord, current_sha256: str) -> ReviewRecordOut:
    return ReviewRecordOut(seq=record.seq, article_id=record.article_id, content_sha256=record.content_sha256, reviewer=reviewer_out(record),
                           decided_at=record.decided_at, decision=record.decision, decision_label=record.decision.label,
                           comment=record.comment, current_content=record.content_sha256 == current_sha256)

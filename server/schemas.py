"""Request and response models: what clients send and see, kept apart from internal
types so nothing internal leaks. Enumerations come from the one vocabulary.

One meaning per name across the API: `review_status`, `evidence_kind`, `audience` and
`updated_since` filter both endpoints; `citations` is always the list of citation
numbers a text carries; `references` the full references those numbers name.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from indexer.vocabulary import Audience, EvidenceKind, NoticeType, ReviewStatus
from server.review_schemas import ReviewOut

RETRACTED_DESCRIPTION = ("Passages citing a retracted source: ranked below all others (demote, the default), "
                         "ranked by score (include), or left out (exclude).")
# Every string, list and identifier a client sends is bounded here, so the limits are in
# /openapi.json and nothing unbounded reaches a handler. These are ceilings: settings set
# the limits in force (MEDKB_MAX_QUERY_CHARS, MEDKB_MAX_K, MEDKB_CONVERSATION_TURNS), which
# server/queries.py checks and server/openapi.py writes into the published schema.
TEXT_CEILING = 10_000  # characters in a question or one history entry
# K_CEILING (1,000, from medkb.settings, which refuses a larger MEDKB_MAX_K) is checked by server/queries.py with
# MEDKB_MAX_K (k is not bounded here: the refusal names the bound in force).
HISTORY_CEILING = 1_000  # entries in `history`
FILTER_VALUES = 10  # values in one filter list (each enumeration has fewer members; repeats are harmless)
CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
CONVERSATION_ID_CHARS = 64


def _valid_unicode(text: str) -> str:
    """Refuse text that cannot be encoded: JSON may carry a lone surrogate such as "\\ud800"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains invalid Unicode (a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]

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
    review_status: ReviewStatus = Field(description="The article's status derived from the review log (never its front matter).")
    review_status_label: str
    review: ReviewOut = Field(description="Who approved the article and when, or why it is pending.")
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


class StoreHealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: the conversations file cannot be used; answers go on without follow-ups.")
    reason: str | None = Field(default=None, description="Why the store is degraded.")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: search and answers work, something else does not: the conversation store "
                                              "(`conversations.reason` says why) or the newly published build, refused (`reload_refused` says why; an older build is served).")
    chunks: int
    articles: int
    build: str = Field(description="The build being served.")
    model: str
    conversations: StoreHealthOut
    loaded_at: str = Field("", description="When the build being served was loaded (ISO 8601, UTC).")
    published: str | None = Field(None, description="The build the index root publishes; another than `build` while a new one loads, or when it was refused.")
    reload_refused: str | None = Field(None, description="Why the published build is not served (damaged, or made by another model, encoder or format), and what to run, if it is not.")
    process: int = Field(0, description="The id of the server process that answered (with `medkb serve --workers N`, one of N).")


class FiltersIn(BaseModel):
    model_config = {"extra": "forbid"}

    review_status: list[ReviewStatus] = Field(default=[], max_length=FILTER_VALUES, description="Only articles with these review statuses.")
    evidence_kind: list[EvidenceKind] = Field(default=[], max_length=FILTER_VALUES, description="Only passages citing these evidence kinds.")
    audience: list[Audience] = Field(default=[], max_length=FILTER_VALUES, description="Only articles for this audience ('both' matches either).")
    updated_since: dt.date | None = Field(default=None, description="Only articles updated on or after this date (YYYY-MM-DD).")
    retracted: Literal["demote", "include", "exclude"] = Field(default="demote", description=RETRACTED_DESCRIPTION)


class AskIn(BaseModel):
    model_config = {"extra": "forbid"}

    question: Text = Field(max_length=TEXT_CEILING, description="The question; a follow-up may refer to earlier ones ('how is it treated?').")
    k: int | None = Field(default=None, ge=1, description="Passages to draw the answer from (at most MEDKB_MAX_K).")
    filters: FiltersIn = FiltersIn()
    conversation_id: str | None = Field(default=None, max_length=CONVERSATION_ID_CHARS, pattern=CONVERSATION_ID_PATTERN,
                                        description="Continue this conversation (from an earlier answer).")
    history: list[Annotated[Text, Field(max_length=TEXT_CEILING)]] | None = Field(
        default=None, max_length=HISTORY_CEILING, description="Earlier questions, oldest first, instead of a conversation_id.")


class CitingArticleOut(BaseModel):
    """An article that cites an answer's reference, and the reference's number in it."""

    article_id: str
    article_title: str
    original_number: int


class AnswerReferenceOut(ReferenceOut):
    """A reference in an answer's one numbered list, with the article that cites it. A
    publication cited by several of the answer's articles (the same PMID, DOI, URL, or title,
    source and year) is listed once, with every one of them in `cited_in`."""

    kind: EvidenceKind | None = Field(description="None for an unresolved reference.")
    article_id: str
    article_title: str
    original_number: int = Field(description="The number this reference has in its own article.")
    unresolved: bool = Field(default=False, description="The source article cites this number but lists no reference for it.")
    cited_in: list[CitingArticleOut] = Field(default_factory=list, description="Every article of the answer that cites this reference "
                                              "and its number there, in order of first use (the first is article_id's).")


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
    review: ReviewOut
    last_updated: dt.date | None


class CoverageOut(BaseModel):
    """What an answer stands on."""

    articles: int = Field(description="Articles the answer draws on.")
    approved: int = Field(description="How many of them are approved (review status derived from the review log).")
    latest_update: dt.date | None = Field(description="The most recent `last_updated` among them.")
    retracted_sources: int = Field(description="Sources in the answer's reference list that a notice says were retracted.")
    summary: str = Field(description="The coverage line as the page shows it.")


TurnKind = Literal["question", "follow_up", "acknowledgement", "no_subject"]


class AskOut(BaseModel):
    conversation_id: str | None = Field(description="Send it with the next question to follow up; null when this answer was not kept "
                                                    "(see `notice`), and in a stored answer (GET /api/answers/{id}).")
    notice: str | None = Field(default=None, description="Present when something limited this answer, e.g. follow-ups being unavailable.")
    answer_id: str | None = Field(default=None, description="The answer's permanent id (GET /api/answers/{answer_id}); null when it could not be stored.")
    permalink: str | None = Field(default=None, description="Where the answer can be read again as it was given (/answers/{answer_id}).")
    turn: TurnKind = Field(default="question", description="How the question was read: a question naming its own subject, a follow-up "
                                                           "on the conversation's topic, an acknowledgement (not searched), or a question "
                                                           "with no subject and nothing earlier to take one from (not searched).")
    topic: str | None = Field(default=None, description="The conversation's topic after this turn.")
    reply: str | None = Field(default=None, description="For an acknowledgement: a short reply (no search, no key points).")
    question: str
    resolved_query: str = Field(description="The question as searched, with the conversation's context applied; empty when it was not searched.")
    searched_for: str | None = Field(default=None, description="The words searched, when they differ from the question as typed (a correction).")
    no_match: str | None = Field(default=None, description="Why there is no answer: nothing in the knowledge base matches, or the question names no subject.")
    aspect: str | None = Field(default=None, description="The aspect asked (treatment, cause, diagnosis, dose, ...), which steers the key points.")
    aspect_note: str | None = Field(default=None, description="Present when the knowledge base has nothing on that aspect of the topic: "
                                                              "then there are no key points and the passages are only the nearest ones.")
    coverage: CoverageOut | None = Field(default=None, description="How many articles the answer draws on, how many approved, the most recent "
                                                                   "update, retracted sources; null when nothing was searched.")
    key_points: list[KeyPointOut]
    groups: list[PassageGroupOut] = Field(description="From the guidelines first, then from the research, then other sources.")
    references: list[AnswerReferenceOut]
    articles: list[ArticleStatusOut]
    caution: str | None = Field(description="Present whenever any content shown is not approved: the full caution when none of it is, "
                                            "and for an answer mixing approved and pending articles, how many of its articles and key "
                                            "points are pending. Null when the answer shows nothing.")
    related_questions: list[str]
    took_ms: float


ANSWER_ID_PATTERN = r"^[A-Za-z0-9_-]{16}$"
COMMENT_CEILING = 10_000  # MEDKB_FEEDBACK_COMMENT_CHARS sets the limit in force
FEEDBACK_PAGE_CEILING = 100
FEEDBACK_OFFSET_CEILING = 1_000_000


class FeedbackIn(BaseModel):
    model_config = {"extra": "forbid"}

    helpful: bool = Field(description="Was the answer helpful?")
    comment: Text | None = Field(default=None, max_length=COMMENT_CEILING,
                                 description="Optional; at most MEDKB_FEEDBACK_COMMENT_CHARS characters (2000 by default).")


class FeedbackOut(BaseModel):
    id: int
    answer_id: str
    permalink: str = Field(description="The answer the feedback is about, as it was given.")
    created: dt.datetime
    helpful: bool
    comment: str | None
    question: str = Field(description="The answer's question, as asked.")
    resolved_query: str = Field(description="The question as it was searched.")


class FeedbackPageOut(BaseModel):
    total: int = Field(description="Feedback entries kept (at most MEDKB_MAX_FEEDBACK; the oldest are dropped first).")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page, or null on the last one.")
    items: list[FeedbackOut] = Field(description="Newest first.")

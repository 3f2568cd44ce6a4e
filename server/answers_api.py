"""Answers after they were given: permalinks (`/answers/{id}` and `GET /api/answers/{id}`),
citation export (`GET /api/answers/{id}/references.{ris,bib,txt}`), and feedback
(`POST /api/answers/{id}/feedback`; `GET /api/feedback` for the people who maintain the
corpus: a reviewer's bearer token, or a signed-in session with its CSRF token).

A stored answer is returned as it was given (its JSON, byte for byte), never rebuilt from
today's index or review log. An id that is malformed, unknown or dropped is a 404 that does
not echo it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from medkb.settings import Settings
from retrieval.accounts import refuse_empty_store_file
from retrieval.answer_store import (
    AnswerNotFound,
    AnswerStore,
    AnswerStoreUnavailable,
    Feedback,
    FeedbackLimit,
    StoredAnswer,
)
from server import auth
from server.citation_export import FORMATS, export
from server.deps import AppSettings
from server.errors import ApiError
from server.pages import templates
from server.schemas import (
    ANSWER_ID_PATTERN,
    FEEDBACK_OFFSET_CEILING,
    FEEDBACK_PAGE_CEILING,
    AskOut,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    FeedbackPageOut,
)

router = APIRouter()
authenticated = APIRouter(route_class=auth.AuthenticatedRoute)  # routes that authenticate before validating parameters
ERRORS = {code: {"model": ErrorOut} for code in (404, 422, 503)}
AnswerId = Annotated[str, Path(max_length=64, description="The answer's id (`answer_id` in the answer).")]


def open_answers(settings: Settings) -> AnswerStore:
    """The answer store the settings name (called in lifespan). A 0-byte file where it should be
    raises EmptyStoreFile before it is opened (SQLite would make an empty store of it, overwriting
    what may be a store a failed copy truncated): the server does not start, and the file is left."""
    where = settings.state_location(settings.answers_path)
    refuse_empty_store_file(where, "answer store")
    return AnswerStore(where, max_answers=settings.max_answers, max_answer_bytes=settings.max_answer_bytes,
                       max_feedback=settings.max_feedback, max_feedback_per_answer=settings.feedback_per_answer,
                       max_comment_chars=settings.feedback_comment_chars, timeout=settings.conversations_timeout)


def get_answers(request: Request) -> AnswerStore | None:
    return getattr(request.app.state, "answers", None)


Answers = Annotated[AnswerStore | None, Depends(get_answers)]


def _unavailable(reason: str = "not open") -> ApiError:
    return ApiError(503, "stored answers are unavailable right now (the answer store cannot be used)", code="unavailable")


def stored_answer(store: AnswerStore | None, answer_id: str) -> StoredAnswer:
    if not re.fullmatch(ANSWER_ID_PATTERN, answer_id):
        raise ApiError(404, "no answer has this id", details=[{"location": "path.answer_id", "message": "not an answer id"}])
    if store is None:
        raise _unavailable()
    try:
        return store.get(answer_id)
    except AnswerNotFound:
        raise ApiError(404, "no answer has this id, or it was dropped (only the most recent answers are kept)",
                       details=[{"location": "path.answer_id", "message": "not found"}]) from None
    except AnswerStoreUnavailable as exc:
        raise _unavailable(exc.reason) from None


@router.get("/api/answers/{answer_id}", response_model=AskOut, responses=ERRORS, tags=["answers"])
def get_answer(answer_id: AnswerId, store: Answers) -> Response:
    """The answer as it was given: question, resolved query, key points, passages, references and
    review statuses at that time (`conversation_id` is null: a permalink does not continue a conversation)."""
    return Response(stored_answer(store, answer_id).body, media_type="application/json")


EXPORT_RESPONSES = {200: {"content": {media: {"schema": {"type": "string"}} for media, _ in FORMATS.values()},
                          "description": "The references: RIS, BibTeX, or NLM-style text."}, **ERRORS}


@router.get("/api/answers/{answer_id}/references.{fmt}", response_class=Response, responses=EXPORT_RESPONSES, tags=["answers"])
def export_references(request: Request, answer_id: AnswerId, fmt: Annotated[Literal["ris", "bib", "txt"], Path(description="ris, bib or txt")],
                      store: Answers) -> Response:
    """The answer's reference list, numbered as in the answer, for a reference manager (RIS,
    BibTeX) or to paste (NLM-style text, headed by the answer's permalink as an absolute URL
    built from the request: scheme, host and root path, as the reader reached this server)."""
    stored = stored_answer(store, answer_id)
    media, ext = FORMATS[fmt]
    body = export(fmt, json.loads(stored.body), answer_id, str(request.url_for("answer_page", answer_id=answer_id)))
    disposition = "inline" if fmt == "txt" else "attachment"
    return Response(body, media_type=media, headers={"Content-Disposition": f'{disposition}; filename="medkb-answer-{answer_id}.{ext}"'})


def feedback_out(f: Feedback) -> FeedbackOut:
    return FeedbackOut(id=f.id, answer_id=f.answer_id, permalink=f.permalink, created=dt.datetime.fromtimestamp(f.created, dt.UTC),
                       helpful=f.helpful, comment=f.comment, question=f.question, resolved_query=f.resolved_query)


@router.post("/api/answers/{answer_id}/feedback", response_model=FeedbackOut, status_code=201,
             responses={**ERRORS, 413: {"model": ErrorOut}, 429: {"model": ErrorOut}}, tags=["answers"])
def post_feedback(answer_id: AnswerId, body: FeedbackIn, store: Answers, settings: AppSettings) -> FeedbackOut:
    """Helpful or not, with an optional comment, kept with the answer's permalink."""
    if body.comment is not None and len(body.comment) > settings.feedback_comment_chars:
        raise ApiError(422, f"comment: at most {settings.feedback_comment_chars} characters", details=[{"location": "body.comment", "message": "too long"}])
    stored = stored_answer(store, answer_id)
    answer = json.loads(stored.body)
    try:
        record = store.add_feedback(answer_id, body.helpful, body.comment, answer.get("question", ""), answer.get("resolved_query", ""))
    except AnswerNotFound:
        raise ApiError(404, "no answer has this id, or it was dropped") from None
    except FeedbackLimit:
        raise ApiError(429, f"this answer has had {settings.feedback_per_answer} feedback entries already") from None
    except AnswerStoreUnavailable as exc:
        raise _unavailable(exc.reason) from None
    return feedback_out(record)


@authenticated.get("/api/feedback", response_model=FeedbackPageOut, responses={**ERRORS, 401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
            tags=["answers"])
def list_feedback(request: Request, store: Answers,
                  limit: Annotated[int, Query(ge=1, le=FEEDBACK_PAGE_CEILING, description="Entries per page.")] = 50,
                  offset: Annotated[int, Query(ge=0, le=FEEDBACK_OFFSET_CEILING, description="Entries to skip (newest first).")] = 0) -> FeedbackPageOut:
    """Readers' feedback, newest first, for the people who maintain the corpus: send a
    reviewer's `Authorization: Bearer TOKEN`, or a signed-in session with `X-CSRF-Token`."""
    auth.principal(request)  # found by the route before the parameters were read
    if store is None:
        raise _unavailable()
    try:
        items, total = store.feedback(limit, offset)
    except AnswerStoreUnavailable as exc:
        raise _unavailable(exc.reason) from None
    following = offset + len(items)
    return FeedbackPageOut(total=total, limit=limit, offset=offset, next_offset=following if following < total else None,
                           items=[feedback_out(f) for f in items])


@router.get("/answers/{answer_id}", response_class=HTMLResponse, include_in_schema=False)
def answer_page(request: Request, answer_id: AnswerId, store: Answers, settings: AppSettings) -> HTMLResponse:
    """The answer as it was given, on a page of its own (the script renders it as the search page
    does; without the script, its key points and references are listed)."""
    try:
        stored = stored_answer(store, answer_id)
    except ApiError as exc:
        return templates.TemplateResponse(request, "answer.html", {"answer": None, "error": exc.message, "answer_id": "", "q": "",
                                                                   "max_chars": settings.max_query_chars}, status_code=exc.status)
    answer = json.loads(stored.body)
    given = dt.datetime.fromtimestamp(stored.created, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return templates.TemplateResponse(request, "answer.html", {"answer": answer, "answer_id": answer_id, "given": given, "error": None,
                                                               "q": "", "max_chars": settings.max_query_chars})

"""POST /api/ask: a cited answer, with follow-up questions answered in their conversation's context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.answers import GROUPS, build_answer
from server.conversations import ConversationNotFound, ConversationStore
from server.deps import AppSettings, Service
from server.errors import ApiError
from server.followups import resolve, resolve_history
from server.queries import validate
from server.schemas import (CAUTION, STATUS_LABELS, AnswerPassageOut, AnswerReferenceOut, ArticleStatusOut, AskIn, AskOut, ErrorOut,
                            Identifiers, KeyPointOut, PassageGroupOut)

router = APIRouter()
ASK_FIELDS = {"q": "body.question", "k": "body.k", "status": "body.filters.review_status", "kind": "body.filters.evidence_kind",
              "audience": "body.filters.audience", "updated_since": "body.filters.updated_since"}


def get_conversations(request: Request) -> ConversationStore:
    return request.app.state.conversations


Conversations = Annotated[ConversationStore, Depends(get_conversations)]


@router.post("/api/ask", response_model=AskOut, responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def ask(body: AskIn, service: Service, settings: AppSettings, conversations: Conversations) -> AskOut:
    request = validate(settings, body.question, body.k if body.k is not None else 8, body.filters.review_status, body.filters.evidence_kind,
                       body.filters.audience, body.filters.updated_since, fields=ASK_FIELDS)
    if body.conversation_id is not None and body.history is not None:
        raise ApiError(422, "give either conversation_id or history, not both", details=[{"location": "body.history", "message": "conflicts with conversation_id"}])
    if body.history is not None:
        if len(body.history) > settings.conversation_turns:
            raise ApiError(422, f"history: at most {settings.conversation_turns} earlier questions", details=[{"location": "body.history", "message": "too long"}])
        history = [validate(settings, h, 1, fields={**ASK_FIELDS, "q": "body.history"}).q for h in body.history]
        resolved_history = resolve_history(history)
    elif body.conversation_id is not None:
        try:
            resolved_history = [t.resolved for t in conversations.history(body.conversation_id)]
        except ConversationNotFound:
            raise ApiError(404, f"conversation {body.conversation_id!r} was not found or has expired; ask without it to start a new one") from None
    else:
        resolved_history = []
    resolved = resolve(request.q, resolved_history)
    answer = build_answer(service, request.q, resolved, k=request.k, filters=request.filters)
    conversation_id = conversations.append(body.conversation_id, request.q, resolved)
    return AskOut(
        conversation_id=conversation_id,
        question=answer.question,
        resolved_query=answer.resolved_query,
        key_points=[KeyPointOut(**vars(p)) for p in answer.key_points],
        groups=[PassageGroupOut(name=name, label=label, passages=[AnswerPassageOut(**vars(p), review_status_label=STATUS_LABELS.get(p.review_status, p.review_status))
                                                                 for p in answer.groups[name]]) for name, label in GROUPS],
        references=[AnswerReferenceOut(**{**vars(r), "identifiers": Identifiers(**r.identifiers)}) for r in answer.references],
        articles=[ArticleStatusOut(**vars(a), review_status_label=STATUS_LABELS.get(a.review_status, a.review_status)) for a in answer.articles],
        caution=None if answer.all_approved else CAUTION,
        related_questions=answer.related_questions,
        took_ms=round(answer.took_ms, 3),
    )

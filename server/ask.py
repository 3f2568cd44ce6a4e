"""POST /api/ask: a cited answer, with follow-up questions answered in their conversation's context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from retrieval.answers import build_answer
from retrieval.conversations import ConversationNotFound, ConversationStore
from retrieval.followups import resolve, resolve_history
from server.deps import AppSettings, Service
from server.errors import ApiError
from server.present import ask_out
from server.queries import make_filters, validate
from server.schemas import AskIn, AskOut, ErrorOut

router = APIRouter()
DEFAULT_ASK_K = 8


def get_conversations(request: Request) -> ConversationStore:
    return request.app.state.conversations


Conversations = Annotated[ConversationStore, Depends(get_conversations)]


def _earlier_questions(body: AskIn, settings, conversations: ConversationStore) -> list[str]:
    """The conversation's earlier questions as resolved, from `history` or the stored conversation."""
    if body.conversation_id is not None and body.history is not None:
        raise ApiError(422, "give either conversation_id or history, not both", details=[{"location": "body.history", "message": "conflicts with conversation_id"}])
    if body.history is not None:
        if len(body.history) > settings.conversation_turns:
            raise ApiError(422, f"history: at most {settings.conversation_turns} earlier questions", details=[{"location": "body.history", "message": "too long"}])
        return resolve_history([validate(settings, h, 1, q_location="body.history").q for h in body.history])
    if body.conversation_id is not None:
        try:
            return [t.resolved for t in conversations.history(body.conversation_id)]
        except ConversationNotFound:
            raise ApiError(404, f"conversation {body.conversation_id!r} was not found or has expired; ask without it to start a new one") from None
    return []


@router.post("/api/ask", response_model=AskOut, responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def ask(body: AskIn, service: Service, settings: AppSettings, conversations: Conversations) -> AskOut:
    f = body.filters
    request = validate(settings, body.question, body.k if body.k is not None else DEFAULT_ASK_K,
                       make_filters(f.review_status, f.evidence_kind, f.audience, f.updated_since, f.retracted),
                       q_location="body.question", k_location="body.k")
    resolved = resolve(request.q, _earlier_questions(body, settings, conversations))
    answer = build_answer(service, request.q, resolved, k=request.k, filters=request.filters)
    conversation_id = conversations.append(body.conversation_id, request.q, resolved)
    return ask_out(answer, conversation_id)

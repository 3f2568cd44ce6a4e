"""POST /api/ask: a cited answer, with follow-up questions answered in their conversation's context.

A conversation that is unknown, expired or dropped (also between reading its history and
recording the new turn) is a 404. Starting a conversation counts against the client's
per-minute allowance (429 past it). A conversation store that cannot be used does not stop
answers: the question is answered without its conversation, `conversation_id` is null and
`notice` says why.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from retrieval.answers import build_answer
from retrieval.conversations import ConversationNotFound, ConversationStore, ConversationStoreUnavailable
from retrieval.followups import resolve, resolve_history
from server.deps import AppSettings, Service
from server.errors import ApiError, clip
from server.limits import StartLimiter, client_address, client_key, retry_after
from server.present import ask_out
from server.queries import make_filters, validate
from server.schemas import AskIn, AskOut, ErrorOut

router = APIRouter()
DEFAULT_ASK_K = 8
STORE_DOWN = "Follow-ups are unavailable right now (the conversation store cannot be used), so this answer was not kept"
RESPONSES = {code: {"model": ErrorOut} for code in (404, 413, 422, 429, 503)}


def get_conversations(request: Request) -> ConversationStore | None:
    return getattr(request.app.state, "conversations", None)


def get_start_limiter(request: Request) -> StartLimiter:
    return request.app.state.start_limiter


Conversations = Annotated[ConversationStore | None, Depends(get_conversations)]
StartLimit = Annotated[StartLimiter, Depends(get_start_limiter)]


def _not_found(conversation_id: str) -> ApiError:
    return ApiError(404, f"conversation {clip(conversation_id, 64)!r} was not found or has expired; ask without it to start a new one",
                    details=[{"location": "body.conversation_id", "message": "not found or expired"}])


def _earlier_questions(body: AskIn, settings, conversations: ConversationStore | None, notices: list[str]) -> list[str]:
    """The conversation's earlier questions as resolved, from `history` or the stored conversation."""
    if body.conversation_id is not None and body.history is not None:
        raise ApiError(422, "give either conversation_id or history, not both", details=[{"location": "body.history", "message": "conflicts with conversation_id"}])
    if body.history is not None:
        if len(body.history) > settings.conversation_turns:
            raise ApiError(422, f"history: at most {settings.conversation_turns} earlier questions", details=[{"location": "body.history", "message": "too long"}])
        return resolve_history([validate(settings, h, 1, q_location="body.history").q for h in body.history])
    if body.conversation_id is not None:
        try:
            if conversations is None:
                raise ConversationStoreUnavailable("not open")
            return [t.resolved for t in conversations.history(body.conversation_id)]
        except ConversationNotFound:
            raise _not_found(body.conversation_id) from None
        except ConversationStoreUnavailable:
            notices.append(f"{STORE_DOWN}; this question was answered without the conversation's earlier questions.")
    return []


@router.post("/api/ask", response_model=AskOut, responses=RESPONSES)
def ask(body: AskIn, request: Request, service: Service, settings: AppSettings, conversations: Conversations, limiter: StartLimit) -> AskOut:
    f = body.filters
    search = validate(settings, body.question, body.k if body.k is not None else DEFAULT_ASK_K,
                      make_filters(f.review_status, f.evidence_kind, f.audience, f.updated_since, f.retracted),
                      q_location="body.question", k_location="body.k")
    notices: list[str] = []
    earlier = _earlier_questions(body, settings, conversations, notices)
    address = client_address(request)
    if body.conversation_id is None:
        wait = limiter.take(address)
        if wait:
            raise ApiError(429, f"too many new conversations from this client: at most {settings.conversation_starts_per_minute} a minute; "
                                f"try again in {retry_after(wait)} s, or continue an earlier conversation",
                           headers={"Retry-After": retry_after(wait)})
    resolved = resolve(search.q, earlier)
    answer = build_answer(service, search.q, resolved, k=search.k, filters=search.filters)
    conversation_id = None
    if not notices:
        try:
            if conversations is None:
                raise ConversationStoreUnavailable("not open")
            conversation_id = conversations.append(body.conversation_id, search.q, resolved, client=client_key(address))
        except ConversationNotFound:
            raise _not_found(body.conversation_id or "") from None
        except ConversationStoreUnavailable:
            notices.append(f"{STORE_DOWN}; a follow-up will be answered as a question of its own.")
    return ask_out(answer, conversation_id, " ".join(notices) or None)

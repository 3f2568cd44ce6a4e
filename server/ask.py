"""POST /api/ask: a cited answer, with follow-up questions answered in their conversation's context.

Each turn is classified before it is resolved (retrieval.followups): an acknowledgement is
not searched and leaves the topic alone; a question naming its own subject is searched as
typed and becomes the topic; a back-reference or an elliptic follow-up takes the topic; a
question with no subject and nothing to take one from is not searched and says so. The
topic is stored with each turn, apart from the resolved strings.

A conversation that is unknown, expired or dropped (also between reading its history and
recording the new turn) is a 404. Starting a conversation counts against the client's
per-minute allowance (429 past it). A conversation store that cannot be used does not stop
answers: the question is answered without its conversation, `conversation_id` is null and
`notice` says why.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from retrieval.answer_store import AnswerStoreUnavailable, AnswerTooLarge, new_answer_id, permalink_of
from retrieval.answers import acknowledgement_answer, build_answer, no_subject_answer
from retrieval.conversations import ConversationNotFound, ConversationStore, ConversationStoreUnavailable, Turn
from retrieval.followups import ACKNOWLEDGEMENT, NO_SUBJECT, read_turn, topic_after
from server.answers_api import Answers
from server.deps import AppSettings, Service
from server.errors import ApiError, clip
from server.limits import StartLimiter, client_address, client_key, retry_after
from server.present import ask_out
from server.queries import make_filters, most_k, validate
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


def _topic_of_turns(turns: list[Turn]) -> str | None:
    """The topic stored with the last turn; for turns stored before turns were classified, read again from the questions."""
    if not turns:
        return None
    if turns[-1].kind is not None:
        return turns[-1].topic
    return topic_after([t.question for t in turns])


def _earlier_topic(body: AskIn, settings, conversations: ConversationStore | None, notices: list[str]) -> str | None:
    """The conversation's topic so far, from `history` (read turn by turn) or the stored conversation."""
    if body.conversation_id is not None and body.history is not None:
        raise ApiError(422, "give either conversation_id or history, not both", details=[{"location": "body.history", "message": "conflicts with conversation_id"}])
    if body.history is not None:
        if len(body.history) > settings.conversation_turns:
            raise ApiError(422, f"history: at most {settings.conversation_turns} earlier questions", details=[{"location": "body.history", "message": "too long"}])
        return topic_after([validate(settings, h, 1, q_location="body.history").q for h in body.history])
    if body.conversation_id is not None:
        try:
            if conversations is None:
                raise ConversationStoreUnavailable("not open")
            return _topic_of_turns(conversations.history(body.conversation_id))
        except ConversationNotFound:
            raise _not_found(body.conversation_id) from None
        except ConversationStoreUnavailable:
            notices.append(f"{STORE_DOWN}; this question was answered without the conversation's earlier questions.")
    return None


def keep(store, out: AskOut) -> AskOut:
    """Give the answer its permalink and keep it as it was given (without the conversation id:
    a shared permalink must not let its reader continue the conversation). An answer that
    cannot be kept is returned without a permalink, and says why."""
    if store is None or out.turn == ACKNOWLEDGEMENT:
        return out
    answer_id = new_answer_id()
    given = out.model_copy(update={"answer_id": answer_id, "permalink": permalink_of(answer_id)})
    try:
        store.put(answer_id, out.question, given.model_copy(update={"conversation_id": None}).model_dump_json())
    except AnswerTooLarge:
        return out.model_copy(update={"notice": " ".join(filter(None, [out.notice, "This answer is too large to keep, so it has no permalink."]))})
    except AnswerStoreUnavailable:
        return out.model_copy(update={"notice": " ".join(filter(None, [out.notice, "Permalinks are unavailable right now, so this answer has none."]))})
    return given


@router.post("/api/ask", response_model=AskOut, responses=RESPONSES)
def ask(body: AskIn, request: Request, service: Service, settings: AppSettings, conversations: Conversations, limiter: StartLimit,
        answers: Answers) -> AskOut:
    f = body.filters
    # Without k: DEFAULT_ASK_K passages, or fewer if MEDKB_MAX_K allows fewer (a default is never refused).
    search = validate(settings, body.question, body.k if body.k is not None else min(DEFAULT_ASK_K, most_k(settings)),
                      make_filters(f.review_status, f.evidence_kind, f.audience, f.updated_since, f.retracted),
                      q_location="body.question", k_location="body.k")
    notices: list[str] = []
    topic = _earlier_topic(body, settings, conversations, notices)
    address = client_address(request)
    if body.conversation_id is None:
        wait = limiter.take(address)
        if wait:
            raise ApiError(429, f"too many new conversations from this client: at most {settings.conversation_starts_per_minute} a minute; "
                                f"try again in {retry_after(wait)} s, or continue an earlier conversation",
                           headers={"Retry-After": retry_after(wait)})
    reading = read_turn(search.q, topic)
    if reading.kind == ACKNOWLEDGEMENT:
        answer = acknowledgement_answer(search.q, reading.topic)
    elif reading.kind == NO_SUBJECT:
        answer = no_subject_answer(search.q)
    else:
        answer = build_answer(service, search.q, reading.searched, k=search.k, filters=search.filters, topic=reading.topic, turn=reading.kind)
    conversation_id = None
    if not notices:
        try:
            if conversations is None:
                raise ConversationStoreUnavailable("not open")
            conversation_id = conversations.append(body.conversation_id, search.q, reading.searched or "", client=client_key(address),
                                                   kind=reading.kind, topic=reading.topic)
        except ConversationNotFound:
            raise _not_found(body.conversation_id or "") from None
        except ConversationStoreUnavailable:
            notices.append(f"{STORE_DOWN}; a follow-up will be answered as a question of its own.")
    return keep(answers, ask_out(answer, conversation_id, " ".join(notices) or None))

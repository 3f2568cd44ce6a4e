"""Reviews over HTTP: the article API (status + history, record a decision), the review
queue, the article review page (text, diff since the approved version, history, decision
form), and what's new (page and Atom feed).

There is no route that changes or removes a decision: the log only grows.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from indexer.index_store import ArticleRecord
from medkb.settings import Settings
from retrieval.accounts import Account, AccountStore, SignInLimiter, refuse_empty_store_file
from retrieval.reviews import (
    ROLE_DECISIONS,
    ArticleReview,
    Decision,
    ReviewBook,
    ReviewRecord,
    ReviewRefused,
    ReviewStore,
    find_article_bytes,
    record_decision,
)
from retrieval.search import SearchService
from server import auth
from server.deps import AppSettings, Service, loaded_service
from server.errors import ApiError, clip
from server.links import article_path
from server.review_schemas import ArticleOut, ReviewCreatedOut, ReviewIn, record_out, review_out
from server.schemas import ErrorOut

router = APIRouter()
authenticated = APIRouter(route_class=auth.AuthenticatedRoute)  # JSON routes that authenticate before reading the request
MAX_DAYS = 366


def install(app: FastAPI) -> None:
    """Routes and error handling for sign-in and reviews (called by the app factory)."""
    auth.install(app)
    app.include_router(router)
    app.include_router(authenticated)


def attach(app: FastAPI, settings: Settings) -> None:
    """Open the review log and the accounts, and make the search service derive every
    article's status from the log (called in lifespan, after the service loads). A 0-byte file
    where either should be raises EmptyStoreFile before either is opened: the server does not start."""
    reviews_at, accounts_at = settings.state_location(settings.reviews_path), settings.state_location(settings.accounts_path)
    refuse_empty_store_file(reviews_at, "review log")
    refuse_empty_store_file(accounts_at, "account store")
    store = ReviewStore(reviews_at, connect_timeout=settings.db_connect_timeout)
    app.state.reviews = store
    app.state.accounts = AccountStore(accounts_at, connect_timeout=settings.db_connect_timeout)
    app.state.signin_limiter = SignInLimiter(app.state.accounts, settings.signin_max_failures, settings.signin_max_failures_per_address, settings.signin_window)
    app.state.search.use_reviews(ReviewBook(store))


def review_store(request: Request) -> ReviewStore:
    store = getattr(request.app.state, "reviews", None)
    if store is None:
        raise ApiError(503, "the review log is not open yet", code="unavailable")
    return store


# ---------------------------------------------------------------- what an article page and the API show


def article_dirs(service: SearchService, settings: Settings) -> list[Path]:
    return [*settings.corpus_dirs, *(Path(d) for d in service.manifest.corpus.dirs)]


def content_of(store: ReviewStore, service: SearchService, settings: Settings, record: ArticleRecord, sha256: str) -> bytes | None:
    """An article version's bytes: from the log's stored versions, or (for the current one)
    from its file, if the file still holds exactly the indexed content."""
    body = store.content(sha256)
    if body is None and sha256 == record.content_sha256:
        body = find_article_bytes(record, article_dirs(service, settings))
        if body is not None:
            store.remember_content(record.id, body)
    return body


def _text(body: bytes | None) -> str | None:
    return body.decode("utf-8", errors="replace") if body is not None else None


@dataclass
class ArticleView:
    record: ArticleRecord
    review: ArticleReview
    history: list[ReviewRecord]
    text: str | None
    approved_text: str | None
    diff: list[str] | None  # unified diff lines from the last approved version, when it differs


def article_view(request: Request, article_id: str) -> ArticleView:
    service = loaded_service(request)
    store = review_store(request)
    record = service.article(article_id)
    if record is None:
        raise ApiError(404, f"no article {clip(article_id)!r} in the current index")
    settings = request.app.state.settings
    review = service.review_of(article_id)
    text = _text(content_of(store, service, settings, record, record.content_sha256))
    approved_text = diff = None
    last = review.last_approval
    if last is not None and last.content_sha256 != record.content_sha256:
        approved_text = _text(content_of(store, service, settings, record, last.content_sha256))
        if approved_text is not None and text is not None:
            diff = list(difflib.unified_diff(approved_text.splitlines(), text.splitlines(), f"approved {last.content_sha256[:12]}",
                                             f"current {record.content_sha256[:12]}", lineterm=""))
    return ArticleView(record, review, store.history(article_id), text, approved_text, diff)


def article_out(view: ArticleView) -> ArticleOut:
    r = view.record
    return ArticleOut(id=r.id, title=r.title, last_updated=r.last_updated, path=r.path, authors=list(r.authors), content_sha256=r.content_sha256,
                      review_status=view.review.status, review_status_label=view.review.status.label, claimed_status=r.review_status,
                      review=review_out(view.review), history=[record_out(h, r.content_sha256) for h in view.history],
                      diff_since_approved="\n".join(view.diff) if view.diff is not None else None)


def decide(request: Request, account: Account, article_id: str, decision: Decision, content_sha256: str, comment: str) -> ReviewRecord:
    """Record a decision by `account`, or raise ReviewRefused / ApiError(404)."""
    service = loaded_service(request)
    store = review_store(request)
    record = service.article(article_id)
    if record is None:
        raise ApiError(404, f"no article {clip(article_id)!r} in the current index")
    body = content_of(store, service, request.app.state.settings, record, record.content_sha256)
    return record_decision(store, record, account.reviewer, decision, content_sha256, comment, body)


# ---------------------------------------------------------------- JSON API

API_ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}}


# `:path`: an article id may hold a '/' (percent-encoded by every link here; decoded before routing).
@router.get("/api/articles/{article_id:path}", response_model=ArticleOut, responses=API_ERRORS, tags=["reviews"])
def get_article(request: Request, article_id: str) -> ArticleOut:
    """An article's derived review status, its review history (oldest first) and, when an
    earlier version was approved, the diff since then."""
    return article_out(article_view(request, article_id))


@authenticated.post("/api/articles/{article_id:path}/reviews", response_model=ReviewCreatedOut, status_code=201, responses=API_ERRORS, tags=["reviews"])
def post_review(request: Request, article_id: str, body: ReviewIn, principal: Annotated[auth.Principal, Depends(auth.principal)]) -> ReviewCreatedOut:
    """Record a decision on the article's current content. Authenticated with
    `Authorization: Bearer TOKEN`, or a session cookie with `X-CSRF-Token`. 401 without
    credentials (whatever the body; a bad body from a client that may post gets 422); 403 for
    a role that may not make this decision or for an author approving their own article; 409
    when `content_sha256` is not the current content, or when approving an article that cites
    a retracted source."""
    try:
        record = decide(request, principal.account, article_id, body.decision, body.content_sha256, body.comment)
    except ReviewRefused as exc:
        raise ApiError(exc.status, exc.message, code=exc.code) from None
    view = article_view(request, article_id)
    return ReviewCreatedOut(review=record_out(record, view.record.content_sha256), article=article_out(view))


# ---------------------------------------------------------------- pages


def render(request: Request, name: str, context: dict, status: int = 200, headers: dict | None = None) -> HTMLResponse:
    from server.pages import templates

    session = auth.current_session(request) if getattr(request.app.state, "accounts", None) is not None else None
    # The sign-in link returns to this page (a path no longer than a real page's, else the queue).
    context = {"user": session.account if session else None, "csrf": session.csrf if session else "",
               "here": auth.safe_next(request.url.path), **context}
    return templates.TemplateResponse(request, name, context, status_code=status, headers=headers)


@router.get("/reviews", response_class=HTMLResponse, include_in_schema=False)
def review_queue(request: Request, service: Service) -> HTMLResponse:
    """Articles awaiting review, oldest first (by when their current version was first seen)."""
    store = review_store(request)
    statuses = service.review_statuses()
    seen = {(v.article_id, v.sha256): v.first_seen for v in store.versions()}
    waiting = []
    for article_id, review in statuses.items():
        if review.awaiting_review:
            record = service.article(article_id)
            since = seen.get((article_id, record.content_sha256))
            waiting.append((since or dt.datetime.max.replace(tzinfo=dt.UTC), record, review))
    waiting.sort(key=lambda item: (item[0], item[1].id))
    return render(request, "review_queue.html", {"items": waiting})


@router.get("/articles/{article_id:path}", response_class=HTMLResponse, include_in_schema=False)
def article_page(request: Request, article_id: str) -> HTMLResponse:
    return _article_page(request, article_id)


def _article_page(request: Request, article_id: str, error: str | None = None, status: int = 200, comment: str = "") -> HTMLResponse:
    try:
        view = article_view(request, article_id)
    except ApiError as exc:
        return render(request, "message.html", {"title": "Not found", "message": exc.message}, exc.status)
    session = auth.current_session(request)
    allowed: list[Decision] = []
    if session is not None:
        allowed = [d for d in Decision if d in ROLE_DECISIONS.get(session.account.role.value, frozenset())]
    is_author = session is not None and session.account.name in view.record.authors
    store: AccountStore = request.app.state.accounts
    conflicts = {name: account.conflicts for name in {h.reviewer.name for h in view.history} if (account := store.get(name)) is not None}
    return render(request, "review_article.html", {"view": view, "allowed": allowed, "is_author": is_author, "error": error, "comment": comment,
                                                   "conflicts": conflicts}, status)


@router.post("/articles/{article_id:path}/reviews", include_in_schema=False)
async def article_decision(request: Request, article_id: str) -> Response:
    session = await run_in_threadpool(auth.current_session, request)  # before the form: signed out is 401 whatever was sent
    if session is None:
        return render(request, "message.html", {"title": "Sign in first", "message": "Sign in as a reviewer to record a decision."}, 401)
    form = await auth.read_form(request)
    if not auth.same(form.get(auth.CSRF_FIELD), session.csrf):
        return _article_page(request, article_id, "The form did not carry this session's CSRF token; nothing was recorded. Please try again.", 403, form.get("comment", ""))
    try:
        decision = Decision(form.get("decision", ""))
    except ValueError:
        return _article_page(request, article_id, f"Unknown decision {clip(form.get('decision', ''), 40)!r}.", 422, form.get("comment", ""))
    try:
        await run_in_threadpool(decide, request, session.account, article_id, decision, form.get("content_sha256", ""), form.get("comment", ""))
    except ReviewRefused as exc:
        return _article_page(request, article_id, exc.message, exc.status, form.get("comment", ""))
    except ApiError as exc:
        return _article_page(request, article_id, exc.message, exc.status)
    return RedirectResponse(article_path(article_id), status_code=303)


# ---------------------------------------------------------------- what's new


@dataclass(frozen=True)
class NewsItem:
    when: dt.datetime
    kind: str  # approved | changed | added
    record: ArticleRecord
    review: ArticleReview
    text: str
    key: str  # unique within the feed


def whats_new(request: Request, days: int) -> list[NewsItem]:
    """Articles approved, changed or added in the last `days` days, newest first."""
    service = loaded_service(request)
    store = review_store(request)
    statuses = service.review_statuses()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    items: list[NewsItem] = []
    for r in store.records(since):
        record = service.article(r.article_id)
        if r.decision == Decision.APPROVE and record is not None:
            current = "" if r.content_sha256 == record.content_sha256 else " (an earlier version; it has changed since)"
            items.append(NewsItem(r.decided_at, "approved", record, statuses[record.id],
                                  f"Approved by {r.reviewer.signature} on {r.decided_at.date().isoformat()}{current}", f"review-{r.seq}"))
    first: dict[str, str] = {}
    for v in store.versions():
        first.setdefault(v.article_id, v.sha256)
        record = service.article(v.article_id)
        if record is None or v.first_seen < since:
            continue
        kind = "added" if first[v.article_id] == v.sha256 else "changed"
        current = "" if v.sha256 == record.content_sha256 else " (since superseded)"
        items.append(NewsItem(v.first_seen, kind, record, statuses[record.id],
                              f"{'First indexed' if kind == 'added' else 'Content changed'} on {v.first_seen.date().isoformat()}{current}",
                              f"version-{v.sha256[:16]}"))
    items.sort(key=lambda item: (item.when, item.key), reverse=True)
    return items


def _days(settings: Settings, days: int | None) -> int:
    days = settings.whats_new_days if days is None else days
    if not 1 <= days <= MAX_DAYS:
        raise ApiError(422, f"days: must be between 1 and {MAX_DAYS}, got {days}", details=[{"location": "query.days", "message": "out of range"}])
    return days


@router.get("/new", response_class=HTMLResponse, include_in_schema=False)
def whats_new_page(request: Request, settings: AppSettings, days: Annotated[int | None, Query()] = None) -> HTMLResponse:
    try:
        days = _days(settings, days)
    except ApiError as exc:
        return render(request, "message.html", {"title": "Bad request", "message": exc.message}, exc.status)
    return render(request, "whats_new.html", {"items": whats_new(request, days), "days": days})


ATOM = "http://www.w3.org/2005/Atom"


@router.get("/new.atom", tags=["reviews"], responses={200: {"content": {"application/atom+xml": {}}}, 422: {"model": ErrorOut}})
def whats_new_feed(request: Request, settings: AppSettings, days: Annotated[int | None, Query(description="Look back this many days.")] = None) -> Response:
    """An Atom feed of articles approved, changed or added in the last `days` days."""
    days = _days(settings, days)
    items = whats_new(request, days)
    base = str(request.base_url).rstrip("/")
    ET.register_namespace("", ATOM)

    def sub(parent, tag, text=None, **attrs):
        node = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            node.text = text
        return node

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "title", "medkb: what's new")
    sub(feed, "subtitle", f"Articles approved, changed or added in the last {days} days")
    sub(feed, "id", f"{base}/new.atom")
    sub(feed, "updated", (items[0].when if items else dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"))
    sub(feed, "link", rel="self", href=f"{base}/new.atom?days={days}")
    sub(feed, "link", rel="alternate", type="text/html", href=f"{base}/new?days={days}")
    author = sub(feed, "author")
    sub(author, "name", "medkb")
    for item in items:
        entry = sub(feed, "entry")
        sub(entry, "title", f"{item.kind.capitalize()}: {item.record.title}")
        sub(entry, "id", f"{base}{article_path(item.record.id)}#{item.key}")
        sub(entry, "updated", item.when.isoformat(timespec="seconds"))
        sub(entry, "link", rel="alternate", type="text/html", href=f"{base}{article_path(item.record.id)}")
        sub(entry, "category", term=item.kind)
        sub(entry, "summary", f"{item.text}. Now: {item.review.note}.")
    xml = ET.tostring(feed, encoding="unicode", xml_declaration=False)
    return Response('<?xml version="1.0" encoding="utf-8"?>\n' + xml, media_type="application/atom+xml; charset=utf-8")

"""JSON API: /api/search and /healthz. Handlers validate, call the service, map the result."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from indexer.vocabulary import Audience, EvidenceKind, ReviewStatus
from server.deps import AppSettings, Service
from server.present import search_out
from server.queries import make_filters, validate
from server.schemas import FILTER_VALUES, RETRACTED_DESCRIPTION, TEXT_CEILING, ErrorOut, HealthOut, SearchOut, StoreHealthOut

router = APIRouter()
ERRORS = {code: {"model": ErrorOut} for code in (413, 422, 503)}


@router.get("/api/search", response_model=SearchOut, responses=ERRORS)
async def search(
    service: Service,
    settings: AppSettings,
    q: Annotated[str | None, Query(max_length=TEXT_CEILING, description="The question or keywords.")] = None,
    k: Annotated[int | None, Query(ge=1, description="How many passages to return (at most MEDKB_MAX_K).")] = None,
    review_status: Annotated[list[ReviewStatus] | None, Query(max_length=FILTER_VALUES,
                                                              description="Only articles with these review statuses (repeat the parameter for several).")] = None,
    evidence_kind: Annotated[list[EvidenceKind] | None, Query(max_length=FILTER_VALUES, description="Only passages citing these evidence kinds.")] = None,
    audience: Annotated[list[Audience] | None, Query(max_length=FILTER_VALUES, description="Only articles for this audience ('both' matches either).")] = None,
    updated_since: Annotated[dt.date | None, Query(description="Only articles updated on or after this date (YYYY-MM-DD).")] = None,
    retracted: Annotated[Literal["demote", "include", "exclude"], Query(description=RETRACTED_DESCRIPTION)] = "demote",
    status: Annotated[list[ReviewStatus] | None, Query(max_length=FILTER_VALUES, description="Older name of `review_status`, still accepted.", deprecated=True)] = None,
    kind: Annotated[list[EvidenceKind] | None, Query(max_length=FILTER_VALUES, description="Older name of `evidence_kind`, still accepted.", deprecated=True)] = None,
) -> SearchOut:
    filters = make_filters([*(review_status or ()), *(status or ())], [*(evidence_kind or ()), *(kind or ())], audience or (), updated_since, retracted)
    request = validate(settings, q, k, filters)
    # The search (model, FAISS, ranking) on the thread pool, everything else on the event loop:
    # a plain `def` handler would also send FastAPI's check of the response through the pool,
    # a second round trip for every request.
    result = await run_in_threadpool(service.search, request.q, request.k, request.filters)
    return search_out(result, request.k)


@router.api_route("/healthz", methods=["GET", "HEAD"], response_model=HealthOut, responses=ERRORS)  # HEAD: uptime monitors
def healthz(service: Service, request: Request) -> HealthOut:
    """The loaded index, whether the conversation store works (probed now, within its lock timeout), and
    whether the newly published build was refused. Either fault makes it "degraded" (search and answers
    still work); `conversations.reason` or `reload_refused` says why."""
    manifest = service.manifest
    store = getattr(request.app.state, "conversations", None)
    health = store.health() if store is not None else None
    conversations = StoreHealthOut(status="ok") if health and health.ok else StoreHealthOut(status="degraded", reason=health.reason if health else "not open")
    reloader = getattr(request.app.state, "reloader", None)
    live = reloader.status() if reloader is not None else {}
    refused = live.get("refused")
    return HealthOut(status="degraded" if conversations.status == "degraded" or refused else "ok", chunks=manifest.counts.chunks, articles=manifest.counts.articles,
                     build=service.info.build, model=manifest.model.name, conversations=conversations, loaded_at=service.index.loaded_at,
                     published=live.get("published"), reload_refused=refused, process=os.getpid())

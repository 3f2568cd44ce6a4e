"""JSON API: /api/search and /healthz. Handlers validate, call the service, map the result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.deps import AppSettings, Service
from server.present import search_out
from server.queries import validate
from server.schemas import ErrorOut, HealthOut, SearchOut

router = APIRouter()
ERRORS = {422: {"model": ErrorOut}, 503: {"model": ErrorOut}}


@router.get("/api/search", response_model=SearchOut, responses=ERRORS)
def search(
    service: Service,
    settings: AppSettings,
    q: Annotated[str | None, Query(description="The question or keywords.")] = None,
    k: Annotated[int | None, Query(description="How many passages to return.")] = None,
    status: Annotated[list[str] | None, Query(description="Only these review statuses (submitted, under_review, approved).")] = None,
    kind: Annotated[list[str] | None, Query(description="Only passages citing these evidence kinds (guideline, research, education).")] = None,
    audience: Annotated[list[str] | None, Query(description="Only articles for this audience (clinician, patient, both).")] = None,
    updated_since: Annotated[str | None, Query(description="Only articles updated on or after this date (YYYY-MM-DD).")] = None,
) -> SearchOut:
    request = validate(settings, q, k, status, kind, audience, updated_since)
    return search_out(service.search(request.q, request.k, request.filters), request.k)


@router.get("/healthz", response_model=HealthOut, responses=ERRORS)
def healthz(service: Service) -> HealthOut:
    manifest = service.manifest
    return HealthOut(
        status="ok",
        chunks=manifest["counts"]["chunks"],
        articles=manifest["counts"]["articles"],
        build=service.index.directory.name,
        model=manifest["model"]["name"],
    )

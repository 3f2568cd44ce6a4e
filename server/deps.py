"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from medkb.settings import Settings
from retrieval.search import SearchService
from server.errors import ApiError


def get_service(request: Request) -> SearchService:
    service = getattr(request.app.state, "search", None)
    if service is None:
        raise ApiError(503, "the search index is not loaded yet", code="unavailable")
    return service


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


Service = Annotated[SearchService, Depends(get_service)]
AppSettings = Annotated[Settings, Depends(get_settings)]

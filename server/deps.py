"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from medkb.settings import Settings
from retrieval.search import SearchService
from server.errors import ApiError


def loaded_service(request: Request) -> SearchService:
    """The loaded search service; ApiError 503 while the index is not loaded."""
    service = getattr(request.app.state, "search", None)
    if service is None:
        raise ApiError(503, "the search index is not loaded yet", code="unavailable")
    return service


# The dependencies are `async def`, though they await nothing: FastAPI runs a plain `def` dependency on its
# thread pool, a round trip from the event loop for each (two per search request, about 0.3 ms
# of a cached 5 ms search at MedQuAD scale); these only read app.state.
async def get_service(request: Request) -> SearchService:
    """`loaded_service` as a dependency."""
    return loaded_service(request)


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


Service = Annotated[SearchService, Depends(get_service)]
AppSettings = Annotated[Settings, Depends(get_settings)]

"""The FastAPI app factory. The model and the index load in lifespan, never at import."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import medkb
from medkb.settings import Settings
from retrieval.conversations import ConversationStore
from retrieval.search import RetrievalSettings, SearchService, open_service
from server import api, ask, errors, pages

log = logging.getLogger("medkb.server")


def load_service(settings: Settings) -> SearchService:
    """Load the published index and the model, and check that they belong together."""
    return open_service(settings.index_dir, settings.model_dir, retrieval_settings(settings), settings.query_cache_size,
                        settings.batch_window_ms)


def retrieval_settings(settings: Settings) -> RetrievalSettings:
    return RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article, ranker=settings.ranker, no_match=bool(settings.no_match))


def create_app(settings: Settings | None = None, service_factory: Callable[[Settings], SearchService] | None = None) -> FastAPI:
    """Build the app. `service_factory` lets tests supply a service over a tiny index and a fake model."""
    settings = settings or Settings.from_env()
    factory = service_factory or load_service

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.search = factory(settings)
        app.state.conversations = ConversationStore(settings.conversations_db, settings.conversation_ttl, settings.conversation_turns, settings.max_conversations)
        log.info("serving %d chunks from build %s", app.state.search.manifest.counts.chunks, app.state.search.info.build)
        yield
        app.state.search = None

    app = FastAPI(title="medkb", version=medkb.__version__, lifespan=lifespan,
                  description="Cited passages from a medical knowledge base, with the review status of every article.")
    app.state.settings = settings
    app.state.search = None
    errors.install(app)
    app.include_router(api.router)
    app.include_router(ask.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    return app

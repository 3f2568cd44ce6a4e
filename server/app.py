"""The FastAPI app factory. The model and the index load in lifespan, never at import."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import medkb
from medkb.settings import Settings
from server import api, ask, errors, pages
from server.conversations import ConversationStore
from server.search import SearchService

log = logging.getLogger("medkb.server")


def load_service(settings: Settings) -> SearchService:
    """Load the published index and the model, and check that they belong together."""
    from indexer.embedding import load_embedder
    from indexer.index_store import load_index
    from server.search import RetrievalSettings

    index = load_index(settings.index_dir)
    embedder = load_embedder(settings.model_dir)
    retrieval = RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article)
    return SearchService(index, embedder, cache_size=settings.query_cache_size, settings=retrieval)


def create_app(settings: Settings | None = None, service_factory: Callable[[Settings], SearchService] | None = None) -> FastAPI:
    """Build the app. `service_factory` lets tests supply a service over a tiny index and a fake model."""
    settings = settings or Settings.from_env()
    factory = service_factory or load_service

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.search = factory(settings)
        app.state.conversations = ConversationStore(settings.conversations_db, settings.conversation_ttl, settings.conversation_turns, settings.max_conversations)
        log.info("serving %d chunks from %s", len(app.state.search.index.chunks), app.state.search.index.directory)
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

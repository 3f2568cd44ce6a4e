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
from server.reload import Reloader

log = logging.getLogger("medkb.server")


def load_service(settings: Settings) -> SearchService:
    """Load the published index and the model, and check that they belong together. A damaged
    published build is refused for the newest intact kept one (`index.fallback` says why)."""
    return open_service(settings.index_dir, settings.model_dir, retrieval_settings(settings), settings.query_cache_size,
                        settings.batch_window_ms)


def retrieval_settings(settings: Settings) -> RetrievalSettings:
    return RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article)


def _log_like_uvicorn() -> None:
    """Our lines (which build is served, each swap) on stderr at uvicorn's level, unless logging
    is configured already (an embedding application, or a test capturing logs)."""
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.getLogger("uvicorn.error").getEffectiveLevel())
    log.propagate = False


def create_app(settings: Settings | None = None, service_factory: Callable[[Settings], SearchService] | None = None) -> FastAPI:
    """Build the app. `service_factory` lets tests supply a service over a tiny index and a fake model."""
    settings = settings or Settings.from_env()
    factory = service_factory or load_service

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _log_like_uvicorn()
        app.state.search = factory(settings)
        app.state.conversations = ConversationStore(settings.conversations_db, settings.conversation_ttl, settings.conversation_turns, settings.max_conversations)
        fallback = app.state.search.index.fallback  # the published build was damaged: say which build serves, and why
        if fallback:
            log.warning("%s", fallback)
        else:
            log.info("serving %d chunks from build %s", app.state.search.manifest.counts.chunks, app.state.search.info.build)
        # A newly published build is swapped in without a restart (server/reload.py).
        app.state.reloader = Reloader(app.state, settings.reload_seconds)
        app.state.reloader.start()
        yield
        app.state.reloader.stop()
        app.state.search = None

    app = FastAPI(title="medkb", version=medkb.__version__, lifespan=lifespan,
                  description="Cited passages from a medical knowledge base, with the review status of every article.")
    app.state.settings = settings
    app.state.search = None
    app.state.reloader = None
    errors.install(app)
    app.include_router(api.router)
    app.include_router(ask.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    return app

"""The FastAPI app factory. The model and the index load in lifespan, never at import."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

import medkb
from medkb.settings import Settings
from retrieval.conversations import ConversationStore
from retrieval.search import RetrievalSettings, SearchService, open_service
from server import answers_api, api, ask, docs, errors, openapi, pages, reviews
from server.guard import Guard
from server.limits import StartLimiter
from server.reload import Reloader

log = logging.getLogger("medkb.server")


def load_service(settings: Settings) -> SearchService:
    """Load the published index and the model, and check that they belong together. A damaged
    published build is refused for the newest intact kept one (`index.fallback` says why).
    With MEDKB_BACKEND=postgres, the build published in MEDKB_DATABASE_URL, searched there."""
    if settings.backend == "postgres":
        from retrieval.backends import postgres

        return postgres.open_service(settings.require_database_url(), settings.model_dir, retrieval_settings(settings), settings.query_cache_size,
                                     settings.batch_window_ms, ef_search=settings.pg_ef_search, encoder=settings.encoder,
                                     onnx_dir=settings.onnx_cache_dir())
    return open_service(settings.index_dir, settings.model_dir, retrieval_settings(settings), settings.query_cache_size,
                        settings.batch_window_ms, settings.sentence_cache_size, encoder=settings.encoder, onnx_dir=settings.onnx_cache_dir())


def retrieval_settings(settings: Settings) -> RetrievalSettings:
    return RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article, ranker=settings.ranker, no_match=bool(settings.no_match))


class MedkbApp(FastAPI):
    """FastAPI with the guard (body limit, UTF-8 checks, security headers) outside everything,
    Starlette's error middleware included, so even a 500 carries the headers."""

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack(), max_body_bytes=self.state.settings.max_body_bytes)


def open_conversations(settings: Settings) -> ConversationStore:
    """The conversation store (a SQLite file, or PostgreSQL with MEDKB_BACKEND=postgres); a store that
    cannot be used leaves it degraded (logged), never stops the server."""
    return ConversationStore(settings.state_location(settings.conversations_path), settings.conversation_ttl, settings.conversation_turns, settings.max_conversations,
                             max_per_client=settings.conversations_per_client, timeout=settings.conversations_timeout)


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
        # The speller and other per-build tables now, before the port opens: made lazily, they
        # held the first requests of each worker for seconds (3 s at MedQuAD scale).
        app.state.search.warm()
        reviews.attach(app, settings)  # review statuses come from the review log, joined at query time
        app.state.conversations = open_conversations(settings)
        app.state.answers = answers_api.open_answers(settings)  # permalinks and feedback
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
        backend = getattr(app.state.search, "backend", None)
        if backend is not None:
            backend.close()  # the database connections of MEDKB_BACKEND=postgres
        app.state.search = None

    app = MedkbApp(title="medkb", version=medkb.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                   description="Cited passages from a medical knowledge base, with the review status of every article.")
    app.state.settings = settings
    app.state.search = None
    app.state.start_limiter = StartLimiter(settings.conversation_starts_per_minute)
    app.state.reloader = None
    errors.install(app)
    openapi.install(app, settings)
    docs.install(app)
    app.include_router(api.router)
    app.include_router(ask.router)
    app.include_router(answers_api.router)
    app.include_router(answers_api.authenticated)
    app.include_router(pages.router)
    reviews.install(app)  # sign-in, review API and pages, what's new
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    return app

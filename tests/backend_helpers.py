"""Search services over one build through either search backend, for tests parametrised over both.

`embedded` searches the build directory in memory; `postgres` publishes the same build into a
fresh database on the test session's PostgreSQL server (tests/pg_server.py) and searches it
there, with the build's chunks, articles and term statistics read back from the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.index_store import load_index
from retrieval.search import SearchService

from fakes import FakeEmbedder

BACKEND_PARAMS = ["embedded", pytest.param("postgres", marks=pytest.mark.postgres)]


def publish_to_database(root: Path, url: str) -> str:
    """Publish the build under index root `root` into the database at `url`; its build id."""
    from retrieval.backends.postgres import PostgresStore

    with PostgresStore(url) as store:
        return store.publish_index(load_index(root))


def service_over(root: Path, backend: str, request: pytest.FixtureRequest, **kwargs) -> SearchService:
    """A SearchService (fake embedder) over the build published under `root`, searched through
    `backend`; `kwargs` go to SearchService (reviews, ranker, ...). The postgres one closes its
    connections when the test ends."""
    embedder = kwargs.pop("embedder", None) or FakeEmbedder()
    if backend == "embedded":
        return SearchService(load_index(root), embedder, **kwargs)
    from retrieval.backends.postgres import PostgresBackend, load_published

    url = request.getfixturevalue("fresh_database")
    publish_to_database(root, url)
    index = load_published(url)
    service = SearchService(index, embedder, backend=PostgresBackend.for_index(url, index), **kwargs)
    request.addfinalizer(service.backend.close)
    return service


def service_factory(root: Path, backend: str, request: pytest.FixtureRequest):
    """A `create_app(service_factory=...)` that serves the build under `root` through `backend`
    (for postgres: published once into a fresh database, read back on each call)."""
    if backend == "embedded":
        return lambda settings: SearchService(load_index(root), FakeEmbedder())
    url = request.getfixturevalue("fresh_database")
    publish_to_database(root, url)

    def factory(settings) -> SearchService:
        from retrieval.backends.postgres import PostgresBackend, load_published

        index = load_published(url)
        return SearchService(index, FakeEmbedder(), backend=PostgresBackend.for_index(url, index))

    return factory

"""Checks of a search request that depend on settings (query length, k), shared by the
JSON API and the page. Enumerations and dates are validated by pydantic in the schemas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from indexer.vocabulary import Audience, EvidenceKind, ReviewStatus
from medkb.settings import K_CEILING, Settings
from retrieval.search import Filters
from server.errors import ApiError, clip


@dataclass(frozen=True)
class SearchRequest:
    q: str
    k: int
    filters: Filters


def make_filters(review_status: Iterable[ReviewStatus] = (), evidence_kind: Iterable[EvidenceKind] = (),
                 audience: Iterable[Audience] = (), updated_since: dt.date | None = None, retracted: str = "demote") -> Filters:
    return Filters(review_status=tuple(review_status or ()), evidence_kind=tuple(evidence_kind or ()),
                   audience=tuple(audience or ()), updated_since=updated_since, retracted=retracted)


def most_k(settings: Settings) -> int:
    """The largest k a request may ask for: MEDKB_MAX_K, within the schema's ceiling K_CEILING."""
    return min(settings.max_k, K_CEILING)


def validate(settings: Settings, q: str | None, k: int | None, filters: Filters = Filters(),
             q_location: str = "query.q", k_location: str = "query.k") -> SearchRequest:
    """A checked search request, or an ApiError (422) naming the parameter at fault by where
    the client sent it (query string or JSON body)."""
    def bad(location: str, message: str) -> ApiError:
        return ApiError(422, f"{location.split('.', 1)[1]}: {message}", details=[{"location": location, "message": message}])

    if q is None:
        raise bad(q_location, "a query is required")
    query = " ".join(q.split())
    if not query:
        raise bad(q_location, "the query is empty")
    if len(query) > settings.max_query_chars:
        raise bad(q_location, f"the query is {len(query)} characters long; the limit is {settings.max_query_chars}")
    k = settings.default_k if k is None else k
    if not 1 <= k <= most_k(settings):
        raise bad(k_location, f"must be between 1 and {most_k(settings)}, got {clip(k)}")
    return SearchRequest(q=query, k=k, filters=filters)

"""Checks of a search request that depend on settings (query length, k), shared by the
JSON API and the page. Enumerations and dates are validated by pydantic in the schemas."""

from __future__ import annotations

import datetime as dt
import re
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


def _bad(location: str, message: str) -> ApiError:
    return ApiError(422, f"{location.split('.', 1)[1]}: {message}", details=[{"location": location, "message": message}])


def _k_range(settings: Settings, shown: object) -> str:
    return f"must be between 1 and {most_k(settings)}, got {clip(shown)}"


def check_k(settings: Settings, k: int | None, location: str = "query.k") -> int:
    """`k`, or the default when None, if it is between 1 and `most_k`; ApiError (422) otherwise."""
    k = settings.default_k if k is None else k
    if not 1 <= k <= most_k(settings):
        raise _bad(location, _k_range(settings, k))
    return k


def parse_k(settings: Settings, raw: str | None, location: str = "query.k") -> int | None:
    """k as a page's address carries it (text): None when absent or blank (the default applies),
    else the whole number it writes, checked like `check_k`. ApiError (422) naming the limit for
    anything else: a number out of range (of any length), or text that is not a whole number."""
    if raw is None or not raw.strip():
        return None
    written = raw.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", written):
        raise _bad(location, f"must be a whole number between 1 and {most_k(settings)}, got {clip(repr(raw))}")
    if len(written.lstrip("+-")) > 18:  # beyond any limit (and int() refuses past 4,300 digits): no need to read it
        raise _bad(location, _k_range(settings, written))
    return check_k(settings, int(written), location)


def validate(settings: Settings, q: str | None, k: int | None, filters: Filters = Filters(),
             q_location: str = "query.q", k_location: str = "query.k") -> SearchRequest:
    """A checked search request, or an ApiError (422) naming the parameter at fault by where
    the client sent it (query string or JSON body)."""
    if q is None:
        raise _bad(q_location, "a query is required")
    query = " ".join(q.split())
    if not query:
        raise _bad(q_location, "the query is empty")
    if len(query) > settings.max_query_chars:
        raise _bad(q_location, f"the query is {len(query)} characters long; the limit is {settings.max_query_chars}")
    return SearchRequest(q=query, k=check_k(settings, k, k_location), filters=filters)

"""Validation of a search request, shared by the JSON API and the page."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from medkb.settings import Settings
from server.errors import ApiError
from server.search import Filters

REVIEW_STATUSES = ("submitted", "under_review", "approved")
EVIDENCE_KINDS = ("guideline", "research", "education")
AUDIENCES = ("clinician", "patient", "both")


@dataclass(frozen=True)
class SearchRequest:
    q: str
    k: int
    filters: Filters


def _choices(name: str, values: list[str] | None, allowed: tuple[str, ...], location: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in values or []:
        for value in raw.split(","):
            value = value.strip()
            if not value:
                continue
            if value not in allowed:
                raise ApiError(422, f"{location.split('.', 1)[1]}: unknown value {value!r}; expected one of {', '.join(allowed)}", details=[{"location": location, "message": f"unknown value {value!r}"}])
            out.append(value)
    return tuple(out)


SEARCH_FIELDS = {"q": "query.q", "k": "query.k", "status": "query.status", "kind": "query.kind", "audience": "query.audience", "updated_since": "query.updated_since"}


def validate(settings: Settings, q: str | None, k: int | None, status: list[str] | None = None, kind: list[str] | None = None,
             audience: list[str] | None = None, updated_since: str | None = None, fields: dict[str, str] = SEARCH_FIELDS) -> SearchRequest:
    """A checked search request, or an ApiError (422) naming the parameter at fault.
    `fields` maps each parameter to where the client sent it (query string or JSON body)."""
    def bad(name: str, message: str) -> ApiError:
        location = fields[name]
        return ApiError(422, f"{location.split('.', 1)[1]}: {message}", details=[{"location": location, "message": message}])

    if q is None:
        raise bad("q", "a query is required")
    query = " ".join(q.split())
    if not query:
        raise bad("q", "the query is empty")
    if len(query) > settings.max_query_chars:
        raise bad("q", f"the query is {len(query)} characters long; the limit is {settings.max_query_chars}")
    k = settings.default_k if k is None else k
    if not 1 <= k <= settings.max_k:
        raise bad("k", f"must be between 1 and {settings.max_k}, got {k}")
    since = None
    if updated_since:
        try:
            since = dt.date.fromisoformat(updated_since)
        except ValueError:
            raise bad("updated_since", f"not a date (YYYY-MM-DD): {updated_since!r}") from None
    filters = Filters(
        review_status=_choices("status", status, REVIEW_STATUSES, fields["status"]),
        evidence_kind=_choices("kind", kind, EVIDENCE_KINDS, fields["kind"]),
        audience=_choices("audience", audience, AUDIENCES, fields["audience"]),
        updated_since=since,
    )
    return SearchRequest(q=query, k=k, filters=filters)

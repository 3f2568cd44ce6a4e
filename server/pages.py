"""The clinician search page: the HTML twin of /api/search, rendered from the same view."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from indexer.citations import CITATION_RE, expand
from server.deps import AppSettings, loaded_service
from server.errors import ApiError
from server.links import article_path, doi_url, http_url, pubmed_url
from server.present import search_caution, search_out
from server.queries import parse_k, validate
from server.schemas import ErrorOut

router = APIRouter()
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def cite(text: str, anchor: str, numbers: list[int] | None = None) -> Markup:
    """Escape passage text and link each of its citation brackets (those naming only `numbers`,
    the passage's own citations, when given) to the reference list below it."""
    allowed = set(numbers) if numbers is not None else None

    def link(m) -> str:
        try:
            named = set(expand(m.group(1)))
        except ValueError:
            return m.group(0)
        if allowed is not None and not named <= allowed:
            return m.group(0)  # not a citation of this passage (an escaped bracket in the source): text
        return f'<a class="cite" href="#{anchor}-refs">{m.group(0)}</a>'

    return Markup(CITATION_RE.sub(link, str(escape(text))).replace("\n", "<br>"))


templates.env.filters["cite"] = cite
templates.env.filters["http_url"] = http_url
templates.env.filters["pubmed_url"] = pubmed_url
templates.env.filters["doi_url"] = doi_url
templates.env.filters["article_path"] = article_path

# The page answers a bad query or k (of any kind: out of range, not a number, too long) with the
# page itself (HTML) and the reason; what the guard refuses before any page runs (an oversized
# body, a query string that is not UTF-8) gets the API's JSON error shape.
HTML_OR_JSON = {"text/html": {"schema": {"type": "string"}}, "application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorOut.__name__}"}}}
RESPONSES = {422: {"content": HTML_OR_JSON, "description": "The page with the reason, or the JSON error shape (a query string that is not UTF-8)."},
             503: {"content": HTML_OR_JSON, "description": "The index is not loaded yet."},
             413: {"content": HTML_OR_JSON, "description": "The request body is too large."}}


@router.get("/", response_class=HTMLResponse, responses=RESPONSES)
def search_page(
    request: Request,
    settings: AppSettings,
    q: Annotated[str | None, Query(description="The question or keywords (at most MEDKB_MAX_QUERY_CHARS characters).")] = None,
    k: Annotated[str | None, Query(description="How many passages to show (1 to MEDKB_MAX_K; blank: the default).")] = None,
) -> HTMLResponse:
    # Both are read as text and checked here, not by FastAPI, so that every bad value gets this
    # page with the reason rather than the API's JSON error.
    # The query is echoed in the search box and title: never more of it than a query may hold.
    context = {"q": (q or "")[:settings.max_query_chars], "result": None, "error": None, "caution": None, "max_chars": settings.max_query_chars}
    status = 200
    try:
        wanted = parse_k(settings, k)
        if q is not None and q.strip():
            search = validate(settings, q, wanted)
            context["result"] = search_out(loaded_service(request).search(search.q, search.k, search.filters), search.k)
            context["caution"] = search_caution(context["result"])
    except ApiError as exc:
        context["error"] = exc.message
        status = exc.status
    return templates.TemplateResponse(request, "search.html", context, status_code=status)

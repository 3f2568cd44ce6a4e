"""Which URLs may become links on the page: absolute http(s) URLs only, checked again at
render time whatever the index holds (the parser refuses other schemes when indexing).
PMID and DOI links are built here from the identifier, percent-encoded."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

# No whitespace, controls or backslashes anywhere: browsers strip or reinterpret them
# ("java\tscript:", " javascript:", "https:\\evil"), so such a string is never a link.
_HTTP_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f\\]+", re.IGNORECASE)


def http_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL with a host, else None (show it as text)."""
    if not url or len(url) > 2048 or not _HTTP_URL.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def pubmed_url(pmid: str) -> str:
    return f"https://pubmed.ncbi.nlm.nih.gov/{quote(pmid, safe='')}/"


def doi_url(doi: str) -> str:
    return f"https://doi.org/{quote(doi, safe='/')}"


def article_path(article_id: str) -> str:
    """The path of an article's review page, its id percent-encoded whole: an id is text
    (a BEIR import keeps its own), and a '/', '#' or '?' in it must not end the path."""
    return f"/articles/{quote(article_id, safe='')}"

"""Turn search results into the response models that both the page and the API show."""

from __future__ import annotations

from indexer.chunking import Chunk
from server.schemas import CAUTION, STATUS_LABELS, Identifiers, IndexInfo, PassageOut, ReferenceOut, SearchOut
from server.search import SearchResponse


def reference_out(ref: dict) -> ReferenceOut:
    return ReferenceOut(
        number=ref["id"],
        kind=ref["kind"],
        title=ref["title"],
        source=ref["source"],
        year=ref.get("year"),
        authors=ref.get("authors", []),
        identifiers=Identifiers(pmid=ref.get("pmid"), doi=ref.get("doi"), url=ref.get("url")),
    )


def passage_out(rank: int, score: float, chunk: Chunk) -> PassageOut:
    return PassageOut(
        rank=rank,
        score=round(score, 6),
        chunk_id=chunk.id,
        section_id=chunk.section_id,
        article_id=chunk.article_id,
        article_title=chunk.article_title,
        section_path=chunk.section_path,
        text=chunk.text,
        citations=[reference_out(r) for r in chunk.references],
        unresolved_citations=chunk.unresolved_citations,
        review_status=chunk.review_status,
        review_status_label=STATUS_LABELS.get(chunk.review_status, chunk.review_status),
        caution=None if chunk.review_status == "approved" else CAUTION,
        last_updated=chunk.last_updated,
        audience=chunk.audience,
        evidence_kinds=chunk.evidence_kinds,
    )


def search_out(response: SearchResponse, k: int) -> SearchOut:
    return SearchOut(
        query=response.query,
        k=k,
        took_ms=round(response.took_ms, 3),
        total_chunks=response.total_chunks,
        results=[passage_out(r.rank, r.score, r.chunk) for r in response.results],
        index=IndexInfo(**response.index),
    )

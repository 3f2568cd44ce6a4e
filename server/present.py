"""The one presentation seam: search results and cited answers mapped to the response
models that the page and the JSON API both show."""

from __future__ import annotations

from indexer.chunking import Chunk
from indexer.vocabulary import CAUTION, Reference, ReviewStatus
from retrieval.answers import GROUPS, CitedAnswer, NumberedReference
from retrieval.reviews import ArticleReview, derive
from retrieval.search import SearchResult, cites_retracted
from server.review_schemas import review_out
from server.schemas import (
    AnswerPassageOut,
    AnswerReferenceOut,
    ArticleStatusOut,
    AskOut,
    CitingArticleOut,
    CoverageOut,
    Identifiers,
    IndexInfo,
    KeyPointOut,
    NoticeOut,
    PassageGroupOut,
    PassageOut,
    ReferenceOut,
    SearchOut,
)

UNRESOLVED_TITLE = "The source article lists no reference for this number"


def _status(review: ArticleReview) -> dict:
    """The derived review status: never the front matter's claim."""
    return {"review_status": review.status, "review_status_label": review.status.label, "review": review_out(review)}


def _review(reviews: dict[str, ArticleReview], article_id: str, content_sha256: str = "0" * 64) -> ArticleReview:
    # Every result carries its articles' reviews; an article missing from them is shown as not reviewed.
    return reviews.get(article_id) or derive(article_id, content_sha256, [])


def _caution(status: ReviewStatus) -> str | None:
    return None if status == ReviewStatus.APPROVED else CAUTION


RETRACTION_WARNING = "Cites a retracted source: do not rely on it; see the retraction notice in its reference."


def _notices(ref: Reference) -> dict:
    return {"notices": [NoticeOut(**n.to_dict()) for n in ref.notices], "retracted": ref.retracted}


def reference_out(ref: Reference) -> ReferenceOut:
    return ReferenceOut(number=ref.id, kind=ref.kind, title=ref.title, source=ref.source, year=ref.year,
                        authors=list(ref.authors), identifiers=Identifiers(**ref.identifiers()), **_notices(ref))


def _passage_fields(rank: int, score: float, chunk: Chunk, review: ArticleReview) -> dict:
    return dict(
        rank=rank,
        score=round(score, 6),
        chunk_id=chunk.id,
        section_id=chunk.section_id,
        article_id=chunk.article_id,
        article_title=chunk.article_title,
        section_path=chunk.section_path,
        caution=_caution(review.status),
        retraction_warning=RETRACTION_WARNING if cites_retracted(chunk) else None,
        last_updated=chunk.last_updated,
        audience=chunk.audience,
        evidence_kinds=chunk.evidence_kinds,
        **_status(review),
    )


def search_out(result: SearchResult, k: int) -> SearchOut:
    """A search result as /api/search returns it (and the page renders it)."""
    return SearchOut(
        query=result.query,
        retriever=result.retriever,
        k=k,
        took_ms=round(result.took_ms, 3),
        total_chunks=result.total_chunks,
        results=[PassageOut(**_passage_fields(h.rank, h.score, h.chunk, _review(result.reviews, h.chunk.article_id)), text=h.chunk.text, citations=h.chunk.citations,
                            references=[reference_out(r) for r in h.chunk.references],
                            unresolved_citations=h.chunk.unresolved_citations) for h in result.hits],
        index=IndexInfo(build=result.index.build, model=result.index.model),
        searched_for=result.searched_for,
        no_match=result.no_match,
        suggestions=result.suggestions,
    )


def search_caution(out: SearchOut) -> str | None:
    """The caution line over a result page: None when every passage shown is approved (or none
    is shown), CAUTION when none is, and for a mixed page how many passages are pending (each
    pending passage also carries its own note)."""
    pending = sum(1 for p in out.results if p.caution)
    if not pending:
        return None
    if pending == len(out.results):
        return CAUTION
    return (f"Partly pending clinical review: {pending} of the {len(out.results)} passages below come from articles not approved by a "
            "clinician (each says so). Verify them against the cited sources before use.")


def _answer_reference(ref: NumberedReference) -> AnswerReferenceOut:
    common = dict(number=ref.number, article_id=ref.article_id, article_title=ref.article_title, original_number=ref.original_number,
                  cited_in=[CitingArticleOut(article_id=c.article_id, article_title=c.article_title, original_number=c.original_number)
                            for c in ref.cited_in])
    if ref.reference is None:
        return AnswerReferenceOut(kind=None, title=UNRESOLVED_TITLE, source="", identifiers=Identifiers(), unresolved=True, **common)
    r = ref.reference
    return AnswerReferenceOut(kind=r.kind, title=r.title, source=r.source, year=r.year, authors=list(r.authors),
                              identifiers=Identifiers(**r.identifiers()), **_notices(r), **common)


def coverage_out(answer: CitedAnswer) -> CoverageOut | None:
    c = answer.coverage
    if c is None:
        return None
    return CoverageOut(articles=c.articles, approved=c.approved, latest_update=c.latest_update, retracted_sources=c.retracted, summary=c.summary)


def ask_out(answer: CitedAnswer, conversation_id: str | None, notice: str | None = None) -> AskOut:
    """A cited answer as /api/ask returns it (and the page's script renders it)."""
    return AskOut(
        conversation_id=conversation_id,
        notice=notice,
        turn=answer.turn,
        topic=answer.topic,
        reply=answer.reply,
        question=answer.question,
        resolved_query=answer.resolved_query,
        searched_for=answer.searched_for,
        no_match=answer.no_match,
        aspect=answer.aspect,
        aspect_note=answer.aspect_note,
        coverage=coverage_out(answer),
        key_points=[KeyPointOut(text=p.text, citations=p.citations, article_id=p.hit.chunk.article_id, section_path=p.hit.chunk.section_path,
                                chunk_id=p.hit.chunk.id, note=p.note) for p in answer.key_points],
        groups=[PassageGroupOut(name=name, label=label, passages=[
            AnswerPassageOut(**_passage_fields(p.hit.rank, p.hit.score, p.hit.chunk, _review(answer.reviews, p.hit.chunk.article_id)), text=p.text, citations=p.citations, note=p.note)
            for p in answer.group(name)]) for name, label in GROUPS],
        references=[_answer_reference(r) for r in answer.references],
        articles=[ArticleStatusOut(id=a.id, title=a.title, last_updated=a.last_updated, **_status(_review(answer.reviews, a.id, a.content_sha256)))
                  for a in answer.articles],
        caution=answer.caution,
        related_questions=answer.related_questions,
        took_ms=round(answer.took_ms, 3),
    )

"""Filters over per-chunk columns (retrieval/admission.py) admit exactly the chunks that
`Filters.admits` admits, for every combination of filters, and a filtered search uses them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from types import SimpleNamespace

from indexer.build import build_index
from indexer.index_store import load_index
from indexer.vocabulary import Audience, EvidenceKind, ReviewStatus
from retrieval.admission import ChunkColumns
from retrieval.search import Filters, SearchService

from fakes import FakeEmbedder


def _varied_chunks(tiny_corpus, tmp_path):
    """The tiny corpus's chunks, copied with every audience, date, evidence-kind set and
    retraction combination, over three articles."""
    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())
    base = load_index(tmp_path / "index").chunks[0]
    kinds = [[], [EvidenceKind.GUIDELINE], [EvidenceKind.RESEARCH, EvidenceKind.EDUCATION], list(EvidenceKind)]
    dates = [None, dt.date(2024, 1, 1), dt.date(2025, 6, 1)]
    chunks = []
    for n, (audience, date, kind, retracted) in enumerate(itertools.product(Audience, dates, kinds, (False, True))):
        chunks.append(dataclasses.replace(base, id=f"c{n}", article_id=f"a{n % 3}", audience=audience, last_updated=date, evidence_kinds=kind,
                                          references=[SimpleNamespace(retracted=retracted)]))
    return chunks


def test_columns_admit_what_filters_admit(tiny_corpus, tmp_path):
    chunks = _varied_chunks(tiny_corpus, tmp_path)
    columns = ChunkColumns(chunks)
    reviews = {"a0": SimpleNamespace(status=ReviewStatus.APPROVED), "a1": SimpleNamespace(status=ReviewStatus.UNDER_REVIEW)}  # a2: none
    statuses = [(), (ReviewStatus.APPROVED,), (ReviewStatus.SUBMITTED, ReviewStatus.UNDER_REVIEW)]
    kinds = [(), (EvidenceKind.GUIDELINE,), (EvidenceKind.RESEARCH, EvidenceKind.EDUCATION)]
    audiences = [(), (Audience.CLINICIAN,), (Audience.PATIENT, Audience.BOTH)]
    checked = 0
    for status, kind, audience, since, retracted in itertools.product(statuses, kinds, audiences, (None, dt.date(2025, 1, 1)), ("demote", "exclude")):
        filters = Filters(review_status=status, evidence_kind=kind, audience=audience, updated_since=since, retracted=retracted)
        expected = [filters.admits(c, reviews[c.article_id].status if c.article_id in reviews else ReviewStatus.SUBMITTED) for c in chunks]
        assert columns.admitted(filters, reviews).tolist() == expected, filters
        checked += sum(expected)
    assert checked > 0  # some combinations admit chunks, others none


def test_a_new_review_mapping_is_read_again(tiny_corpus, tmp_path):
    chunks = _varied_chunks(tiny_corpus, tmp_path)
    columns = ChunkColumns(chunks)
    approved = Filters(review_status=(ReviewStatus.APPROVED,))
    assert not columns.admitted(approved, {}).any()
    assert columns.admitted(approved, {"a0": SimpleNamespace(status=ReviewStatus.APPROVED)}).sum() == sum(c.article_id == "a0" for c in chunks)


def test_a_filtered_search_returns_only_admitted_passages(tiny_corpus, tmp_path):
    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())
    service = SearchService(load_index(tmp_path / "index"), FakeEmbedder(), ranker=None, no_match=None)
    everything = service.search("iron deficiency microcytosis", 10)
    assert len({h.chunk.article_id for h in everything.hits}) == 2
    # iron-treatment is submitted, microcytosis claims approval in front matter but has no review record: both count as not approved.
    assert service.search("iron deficiency microcytosis", 10, Filters(review_status=(ReviewStatus.APPROVED,))).hits == []
    submitted = service.search("iron deficiency microcytosis", 10, Filters(review_status=(ReviewStatus.SUBMITTED,)))
    assert submitted.hits and all(service.review_of(h.chunk.article_id).status == ReviewStatus.SUBMITTED for h in submitted.hits)

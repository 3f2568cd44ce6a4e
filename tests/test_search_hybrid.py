"""Hybrid retrieval on a tiny corpus with the fake embedder: each list, the fusion,
abbreviation expansion, the per-article cap and filters."""

import pytest

from indexer.build import build_index
from indexer.index_store import load_index
from retrieval.abbreviations import AbbreviationFileError, Abbreviations
from retrieval.search import Filters, RetrievalSettings

from backend_helpers import BACKEND_PARAMS, service_over
from fakes import FakeEmbedder
from review_helpers import review_book


@pytest.fixture(params=BACKEND_PARAMS)
def service(tiny_corpus, tmp_path, request):
    """The same build searched through each backend (the postgres one in the `postgres` tier)."""
    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())
    index = load_index(tmp_path / "index")
    # Review statuses come from the review log: a reviewer has started on "microcytosis"; "iron-treatment" is submitted.
    return service_over(tmp_path / "index", request.param, request,
                        reviews=review_book(tmp_path / "reviews.sqlite", index, {"microcytosis": "start_review"}))


@pytest.mark.parametrize("retriever", ["dense", "lexical", "hybrid"])
def test_each_retriever_finds_the_passage(service, retriever):
    r = service.search("intravenous iron malabsorption", 3, settings=RetrievalSettings(retriever=retriever))
    assert r.hits[0].chunk.section_path[-1] == "Intravenous iron"
    assert [x.rank for x in r.hits] == [1, 2, 3]


def test_hybrid_records_each_signal_and_is_deterministic(service):
    runs = [[(x.chunk.id, x.score) for x in service.search("oral iron first-line", 10).hits] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    top = service.search("oral iron first-line", 1).hits[0]
    assert {"dense", "lexical", "heading"} <= set(top.signals)


def test_abbreviations_expand_the_query(service):
    plain = service.search("IDA", 3, settings=RetrievalSettings(retriever="lexical", expand_abbreviations=False))
    expanded = service.search("IDA", 3, settings=RetrievalSettings(retriever="lexical"))
    assert plain.hits == [] and expanded.expanded_query == "IDA (iron deficiency anemia)"
    assert expanded.hits and "iron" in expanded.hits[0].chunk.text.lower()


def test_abbreviation_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "abbr.tsv"
    bad.write_text("# comment\nIDA\tiron deficiency anemia\nbroken line\n")
    with pytest.raises(AbbreviationFileError, match=r"abbr.tsv:3"):
        Abbreviations.load(bad)
    good = tmp_path / "good.tsv"
    good.write_text("CKD\tchronic kidney disease\nHb\themoglobin\n")
    abbreviations = Abbreviations.load(good)
    assert abbreviations.expand("ckd and Hb") == "ckd and Hb (hemoglobin)", "all-capitals entries match only in capitals"
    assert abbreviations.expand("CKD and hb") == "CKD and hb (chronic kidney disease; hemoglobin)"


def test_cap_per_article(service):
    uncapped = service.search("iron microcytosis ferritin lead heme", 10, settings=RetrievalSettings(max_per_article=0)).hits
    capped = service.search("iron microcytosis ferritin lead heme", 10, settings=RetrievalSettings(max_per_article=1)).hits
    assert max(sum(1 for r in uncapped if r.chunk.article_id == a) for a in {r.chunk.article_id for r in uncapped}) > 1
    assert sorted(r.chunk.article_id for r in capped) == ["iron-treatment", "microcytosis"]


def test_filters_apply_to_every_list(service):
    for retriever in ("dense", "lexical", "hybrid"):
        r = service.search("iron", 10, Filters(review_status=("submitted",)), settings=RetrievalSettings(retriever=retriever))
        assert r.hits and {x.chunk.article_id for x in r.hits} == {"iron-treatment"}
        r = service.search("iron", 10, Filters(evidence_kind=("guideline",)), settings=RetrievalSettings(retriever=retriever))
        assert r.hits and all("guideline" in x.chunk.evidence_kinds for x in r.hits)


def test_lexical_search_alone_never_runs_the_model(service):
    assert service.search("intravenous iron", 3, settings=RetrievalSettings(retriever="lexical")).hits
    assert service._batcher.queries == 0
    service.search("intravenous iron", 3)
    assert service._batcher.queries == 1

"""PubMed/MEDLINE XML (fictitious records in fixtures/pubmed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from indexer.importers import run_import

from import_helpers import FIXTURES, case_file, read_back

ARTICLES = FIXTURES / "pubmed" / "articles.xml"
BROKEN = FIXTURES / "pubmed" / "broken.xml"


@pytest.fixture
def imported(tmp_path: Path):
    report = run_import("pubmed", ARTICLES, tmp_path)
    return report, read_back(tmp_path)


def test_articles_with_an_abstract_are_written(imported):
    report, articles = imported
    assert sorted(articles) == ["pubmed-99999901", "pubmed-99999902"]
    assert report.problems == []
    assert report.skipped == {"record: no abstract": 1}
    (warning,) = report.warnings
    assert warning.file == "articles.xml" and "PMID 99999903" in warning.position and "no abstract" in warning.message


def test_structured_abstract_sections(imported):
    _, articles = imported
    article = articles["pubmed-99999901"]
    assert article.title == "Serum ferritin as the first test for microcytosis in adults: a fictional cohort study."
    assert [s.path for s in article.sections] == [
        ("Abstract",),
        ("Abstract", "BACKGROUND"),
        ("Abstract", "METHODS"),
        ("Abstract", "RESULTS"),
        ("Abstract", "CONCLUSIONS"),
    ]
    results = article.sections[3].blocks[0]
    assert results.text == (
        "A ferritin below 30 ng/mL identified iron deficiency in most patients. "
        "Haemoglobin A2 was raised in a smaller group with normal ferritin [1]."
    )
    background = article.sections[1].blocks[0]
    assert "[in some series]" in background.text and [c.numbers for c in background.citations] == [(1,)]
    assert all(len(s.blocks[0].citations) == 1 for s in article.sections[1:])
    assert article.audience == "clinician"
    assert article.last_updated == dt.date(2021, 2, 20)  # the electronic publication date


def test_the_record_is_the_reference(imported):
    _, articles = imported
    ref = articles["pubmed-99999901"].references[1]
    assert (ref.kind, ref.source, ref.year, ref.pmid, ref.doi) == (
        "research",
        "Journal of Invented Haematology",
        2021,
        "99999901",
        "10.99999/jih.2021.0101",
    )
    assert ref.authors == ("Example AB", "Placeholder C", "Fictional Anaemia Study Group")
    meta = articles["pubmed-99999901"].metadata
    assert meta["original_id"] == "99999901" and meta["mesh_terms"] == ["Anemia, Hypochromic", "Ferritins"]


def test_unlabelled_abstract_is_one_section(imported):
    _, articles = imported
    article = articles["pubmed-99999902"]
    (section,) = article.sections
    assert section.path == ("Abstract",)
    assert section.blocks[0].text.endswith("ongoing blood loss [1].")
    ref = article.references[1]
    assert ref.year == 1998  # from MedlineDate "1998 Dec-1999 Jan"
    assert ref.doi == "10.99999/irgp.1998.77"  # from ArticleIdList when there is no ELocationID
    assert article.last_updated == dt.date(1999, 1, 5)  # the date it entered PubMed


def test_a_malformed_record_is_reported_and_its_neighbours_import(tmp_path: Path):
    report = run_import("pubmed", BROKEN, tmp_path)
    assert sorted(read_back(tmp_path)) == ["pubmed-99999911", "pubmed-99999913"]
    (problem,) = report.problems
    assert problem.file == "broken.xml"
    # the unclosed <ArticleTitle> is found at the </Article> that does not match it, line 36
    assert problem.position == "record 2, line 36, column 9"
    assert report.skipped == {"record: not well-formed XML": 1}


def test_a_folder_of_files(tmp_path: Path):
    report = run_import("pubmed", FIXTURES / "pubmed", tmp_path)
    assert report.written == 4
    assert sorted(read_back(tmp_path)) == ["pubmed-99999901", "pubmed-99999902", "pubmed-99999911", "pubmed-99999913"]


# ---------------------------------------------------------------- retractions, concerns, errata


def record(pmid: str, publication_types: list[tuple[str, str]] = (), corrections: str = "") -> str:
    """One invented PubmedArticle with an abstract; `publication_types` are (UI, name)."""
    types = "".join(f'<PublicationType UI="{ui}">{name}</PublicationType>' for ui, name in publication_types)
    return f"""<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>
<Article PubModel="Print"><Journal><Title>Invented Journal</Title>
<JournalIssue><PubDate><Year>2019</Year><Month>Jun</Month><Day>3</Day></PubDate></JournalIssue></Journal>
<ArticleTitle>An invented study {pmid}.</ArticleTitle>
<Abstract><AbstractText>Ferritin was measured in invented patients.</AbstractText></Abstract>
<PublicationTypeList><PublicationType UI="D016428">Journal Article</PublicationType>{types}</PublicationTypeList>
</Article>{f"<CommentsCorrectionsList>{corrections}</CommentsCorrectionsList>" if corrections else ""}
</MedlineCitation></PubmedArticle>"""


def link(ref_type: str, source: str, pmid: str | None = None, note: str | None = None) -> str:
    pmid_xml = f'<PMID Version="1">{pmid}</PMID>' if pmid is not None else ""
    note_xml = f"<Note>{note}</Note>" if note is not None else ""
    return f'<CommentsCorrections RefType="{ref_type}"><RefSource>{source}</RefSource>{pmid_xml}{note_xml}</CommentsCorrections>'


def import_records(tmp_path: Path, *records: str):
    source = tmp_path / "records.xml"
    source.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n' + "\n".join(records) + "\n</PubmedArticleSet>\n", encoding="utf-8")
    report = run_import("pubmed", source, tmp_path / "out")
    return report, read_back(tmp_path / "out")


def notices_of(article) -> list[dict]:
    return [notice.to_dict() for _, notice in article.notices()]


def test_case_07_retracted_record_keeps_its_retraction(tmp_path: Path):
    report = run_import("pubmed", case_file("07-pubmed-retracted/retracted.xml"), tmp_path)
    (article,) = read_back(tmp_path).values()
    assert article.id == "pubmed-90000001"
    assert article.retracted
    assert notices_of(article) == [{"type": "retracted", "pmid": "90000002", "citation": "Invented J Haematol. 2016;1:1"}]
    assert article.notices()[0][0] == 1  # on reference 1, the record itself
    text = article.path.read_text(encoding="utf-8")
    assert "  notices:\n  - type: retracted\n    pmid: '90000002'\n    citation: Invented J Haematol. 2016;1:1\n" in text
    # the body stays the abstract as published
    assert [s.path for s in article.sections] == [("Abstract",), ("Abstract", "BACKGROUND"), ("Abstract", "RESULTS")]
    assert article.sections[2].blocks[0].text.startswith("A single weekly megadose of oral iron normalised haemoglobin")
    (warning,) = report.warnings
    assert "PMID 90000001" in warning.position and "retracted (PMID 90000002)" in warning.message


@pytest.mark.parametrize(
    "publication_types, corrections, expected",
    [
        pytest.param(
            [], link("RetractionIn", "Invented J. 2020;2:2", "90000102"),
            [{"type": "retracted", "pmid": "90000102", "citation": "Invented J. 2020;2:2"}],
            id="RetractionIn",
        ),
        pytest.param(
            [("D016441", "Retracted Publication")], "",
            [{"type": "retracted"}],
            id="Retracted-Publication-type-alone",
        ),
        pytest.param(
            [], link("RetractedandRepublishedIn", "Invented J. 2021;3:3", "90000103"),
            [{"type": "retracted", "pmid": "90000103", "citation": "Invented J. 2021;3:3", "note": "retracted and republished"}],
            id="RetractedandRepublishedIn",
        ),
        pytest.param(
            [], link("ExpressionOfConcernIn", "Invented J. 2020;4:4", "90000104"),
            [{"type": "expression_of_concern", "pmid": "90000104", "citation": "Invented J. 2020;4:4"}],
            id="ExpressionOfConcernIn",
        ),
        pytest.param(
            [], link("ErratumIn", "Invented J. 2019;5:5", "90000105", note="Example A [corrected to Exemplar A]"),
            [{"type": "erratum", "pmid": "90000105", "citation": "Invented J. 2019;5:5", "note": "Example A [corrected to Exemplar A]"}],
            id="ErratumIn-with-Note",
        ),
        pytest.param(
            [("D016440", "Retraction of Publication")], link("RetractionOf", "Invented J. 2018;6:6", "90000106"),
            [{"type": "retraction_notice", "pmid": "90000106", "citation": "Invented J. 2018;6:6"}],
            id="Retraction-of-Publication",
        ),
        pytest.param(
            [("D016441", "Retracted Publication")],
            link("ErratumIn", "Invented J. 2019;8:8")
            + link("CommentIn", "Invented J. 2019;9:9", "90000109")
            + link("ExpressionOfConcernIn", "Invented J. 2020;7:7", "90000107")
            + link("RetractionIn", "Invented J. 2021;10:10", "90000110"),
            [
                {"type": "retracted", "pmid": "90000110", "citation": "Invented J. 2021;10:10"},
                {"type": "expression_of_concern", "pmid": "90000107", "citation": "Invented J. 2020;7:7"},
                {"type": "erratum", "citation": "Invented J. 2019;8:8"},
            ],
            id="several-most-serious-first-comments-ignored",
        ),
    ],
)
def test_each_kind_of_notice(tmp_path: Path, publication_types, corrections, expected):
    report, articles = import_records(tmp_path, record("90000100", publication_types, corrections))
    article = articles["pubmed-90000100"]
    assert notices_of(article) == expected
    assert article.retracted == any(n["type"] == "retracted" for n in expected)
    assert report.problems == []


def test_a_record_without_notices_has_none(imported):
    _, articles = imported
    article = articles["pubmed-99999901"]
    assert article.notices() == [] and not article.retracted
    assert "notices" not in article.path.read_text(encoding="utf-8")


def test_a_notice_pmid_that_is_not_a_pmid_is_dropped_with_a_warning(tmp_path: Path):
    report, articles = import_records(tmp_path, record("90000200", corrections=link("RetractionIn", "Invented J. 2020;1:1", "PMC12345")))
    assert notices_of(articles["pubmed-90000200"]) == [{"type": "retracted", "citation": "Invented J. 2020;1:1"}]
    assert any("'PMC12345'" in w.message for w in report.warnings)


def test_chunks_carry_the_notices(tmp_path: Path):
    from indexer.chunking import chunk_article

    run_import("pubmed", case_file("07-pubmed-retracted/retracted.xml"), tmp_path)
    (article,) = read_back(tmp_path).values()
    chunks = chunk_article(article, lambda texts: [len(t.split()) for t in texts])
    assert chunks
    for chunk in chunks:
        (reference,) = chunk.references
        assert [n.to_dict() for n in reference.notices] == [{"type": "retracted", "pmid": "90000002", "citation": "Invented J Haematol. 2016;1:1"}]
        assert reference.retracted

"""PubMed/MEDLINE XML (fictitious records in fixtures/pubmed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from import_helpers import FIXTURES, read_back

from indexer.importers import run_import

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

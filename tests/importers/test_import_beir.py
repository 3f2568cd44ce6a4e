"""BEIR corpus.jsonl: ids kept exactly, safe file names, broken lines reported by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.importers import run_import

from import_helpers import FIXTURES, body_of, case_file, read_back

CORPUS = FIXTURES / "beir" / "corpus.jsonl"
BROKEN = FIXTURES / "beir_broken" / "corpus.jsonl"


@pytest.fixture
def imported(tmp_path: Path):
    report = run_import("beir", CORPUS, tmp_path)
    return report, read_back(tmp_path), tmp_path


def test_one_article_per_document_with_the_exact_id(imported):
    report, articles, _ = imported
    source_ids = [json.loads(line)["_id"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    assert report.written == len(source_ids) == 6 and report.problems == []
    assert sorted(articles) == sorted(source_ids)
    for doc_id, article in articles.items():
        assert article.metadata["original_id"] == doc_id
        assert article.references == {} and article.audience == "both" and article.last_updated is None


def test_unsafe_ids_get_safe_distinct_file_names(imported):
    _, articles, out = imported
    odd = articles["MED/7 a:b*?"]
    assert odd.path.parent == out
    assert odd.path.name.startswith("med-7-a-b-") and odd.path.suffix == ".md"
    assert "id: 'MED/7 a:b*?'\n" in odd.path.read_text(encoding="utf-8")
    # a numeric-looking id stays a string, leading zeros and all
    assert "id: '0042'\n" in articles["0042"].path.read_text(encoding="utf-8")
    assert articles["0042"].path.name == "0042.md"
    assert articles["anémie-ü"].path.name.startswith("anemie-u-")


def test_empty_title_is_taken_from_the_text(imported):
    _, articles, _ = imported
    article = articles["no-title-9"]
    assert article.title == "Lead poisoning can cause a microcytic anaemia with basophilic stippling of red ..."
    assert article.metadata["title_from_text"] is True
    assert "title_from_text" not in articles["anemia-001"].metadata
    assert articles["anemia-001"].title == "Iron deficiency and small red cells"


def test_text_is_kept_as_text(imported):
    _, articles, _ = imported
    (section,) = articles["4521"].sections
    assert [b.text for b in section.blocks] == [
        "Thalassaemia trait causes a low mean cell volume with a near-normal haemoglobin. The red cell count is often high, and ferritin is normal.",
        "Haemoglobin electrophoresis shows a raised haemoglobin A2 in beta-thalassaemia trait.",
    ]
    assert articles["4521"].metadata["beir_metadata"] == {"url": "https://example.org/thal", "pubmed_id": ""}
    # markdown-looking text never becomes a heading, a list or HTML; brackets are not citations
    (section,) = articles["0042"].sections
    assert [(b.kind, b.text) for b in section.blocks] == [
        ("paragraph", "# Ring sideroblasts in the marrow are the hallmark."),
        ("paragraph", "- Causes include inherited defects of haem synthesis, alcohol, some drugs and copper deficiency."),
        ("paragraph", "<b>Vitamin B6</b> helps some inherited forms."),
    ]
    (block,) = articles["MED/7 a:b*?"].sections[0].blocks
    assert "[as an acute-phase protein]" in block.text and block.citations == []


def test_broken_lines_are_reported_and_the_rest_imports(tmp_path: Path):
    report = run_import("beir", BROKEN, tmp_path)
    assert sorted(read_back(tmp_path)) == ["empty-text", "good-1", "good-2"]  # empty-text has a title
    assert [(p.file, p.position) for p in report.problems] == [
        ("corpus.jsonl", "line 2, column 55"),  # truncated in the middle of a string
        ("corpus.jsonl", "line 3"),  # no _id
        ("corpus.jsonl", "line 4"),  # not an object
    ]
    assert "invalid JSON" in report.problems[0].message
    assert report.skipped == {
        "record: invalid JSON": 1,
        "record: no _id": 1,
        "record: not a JSON object": 1,
    }


def test_case_09_title_is_content_and_only_an_empty_document_is_skipped(tmp_path: Path):
    report = run_import("beir", case_file("09-beir-empty/corpus.jsonl"), tmp_path)
    articles = read_back(tmp_path)
    assert sorted(articles) == ["doc-normal", "doc-title-only", "doc-ws"]
    assert report.written == 3 and report.skipped == {"record: no title or text": 1}
    (problem,) = report.problems
    assert (problem.position, problem.message) == ("line 1", "document 'doc-empty' has neither title nor text")
    for doc_id, title in (
        ("doc-title-only", "Ferritin cut-off of 30 micrograms per litre for iron deficiency in pregnancy"),
        ("doc-ws", "Lead screening in toddlers with microcytosis"),  # text of spaces and a newline
    ):
        article = articles[doc_id]
        assert article.title == title
        (section,) = article.sections
        assert [(b.kind, b.text) for b in section.blocks] == [("paragraph", title)]
        assert article.metadata["text_from_title"] is True
    assert "text_from_title" not in articles["doc-normal"].metadata
    assert [b.text for b in articles["doc-normal"].sections[0].blocks] == ["Hepcidin rises with inflammation and blocks iron absorption."]


@pytest.mark.parametrize(
    "record, imported",
    [
        ({"title": "Only a title"}, True),  # no "text" key at all
        ({"title": "Only a title", "text": None}, True),
        ({"title": "# Looks like a heading [1]", "text": ""}, True),  # the title as text is escaped, not structure
        ({"title": "  ", "text": " \n "}, False),
        ({"text": ""}, False),
        ({"title": None, "text": None}, False),
    ],
)
def test_title_plus_text_is_the_content(tmp_path: Path, record: dict, imported: bool):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", **record}) + "\n", encoding="utf-8")
    report = run_import("beir", corpus, tmp_path / "out")
    articles = read_back(tmp_path / "out")
    if imported:
        (block,) = articles["d1"].sections[0].blocks
        assert block.text == record["title"] == articles["d1"].title and block.citations == []
        assert report.skipped == {}
    else:
        assert articles == {} and report.skipped == {"record: no title or text": 1}


def test_a_repeated_id_is_reported_not_overwritten(tmp_path: Path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"_id": "d1", "title": "First", "text": "The first text."})
        + "\n"
        + json.dumps({"_id": "d1", "title": "Second", "text": "The second text."})
        + "\n",
        encoding="utf-8",
    )
    report = run_import("beir", corpus, tmp_path / "out")
    assert report.written == 1 and report.skipped == {"article: duplicate id": 1}
    assert report.problems[0].position == "line 2"
    assert "The first text." in body_of(tmp_path / "out" / "d1.md")

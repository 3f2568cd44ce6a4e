"""The seed page (shared/seeds/) and pages of the same template imported as articles."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from indexer.importers import run_import

from import_helpers import body_of, read_back

GUIDELINES = "From the Guidelines"
RESEARCH = "From the Research"


@pytest.fixture
def imported(seed_page: Path, tmp_path: Path):
    report = run_import("seed-page", seed_page, tmp_path / "out")
    (article,) = read_back(tmp_path / "out").values()
    return report, article, tmp_path / "out"


def blocks_in(article, *path: str):
    (section,) = [s for s in article.sections if s.path == path]
    return section.blocks


def test_title_date_and_status(imported):
    report, article, _ = imported
    assert report.written == 1 and report.problems == []
    assert article.title == "What are the causes of chronic microcytic (small red blood cell) anemia?"
    assert article.last_updated == dt.date(2025, 4, 5)
    assert article.review_status == "submitted"  # the page lists all three labels, so the caller decides
    assert article.audience == "clinician"


def test_status_comes_from_the_caller(seed_page: Path, tmp_path: Path):
    run_import("seed-page", seed_page, tmp_path, status="under_review")
    (article,) = read_back(tmp_path).values()
    assert article.review_status == "under_review"


def test_both_parts_and_their_sub_headings(imported):
    _, article, _ = imported
    assert [s.path for s in article.sections] == [
        (GUIDELINES,),
        (GUIDELINES, "Causes of Chronic Microcytosis"),
        (GUIDELINES, "Diagnosis and Treatment"),
        (GUIDELINES, "Key Considerations"),
        (RESEARCH,),
        (RESEARCH, "Causes of Chronic Microcytosis"),
        (RESEARCH, "Diagnosis and Evaluation"),
        (RESEARCH, "Management and Treatment"),
    ]
    bullets = blocks_in(article, RESEARCH, "Management and Treatment")
    assert [b.kind for b in bullets] == ["list_item"] * 3
    guideline_items = [b for b in blocks_in(article, GUIDELINES, "Causes of Chronic Microcytosis") if b.kind == "list_item"]
    assert len(guideline_items) == 3


def test_every_citation_number_becomes_a_bracket_citation(imported):
    _, article, out = imported
    assert article.cited_numbers() == {1, 2, 3, 4, 5, 6}
    body = body_of(next(out.glob("*.md")))
    # trailing numbers: inside the sentence, before its period
    assert "in red blood cell precursors [1]." in body
    assert "genetic testing [1]. Treatment depends" in body
    # prose citations become a bracket at the end of the sentence, the prose is gone
    assert "- Iron deficiency anemia is the most common cause of microcytosis [2, 3]\n" in body
    assert "certain chronic inflammatory conditions [3, 5, 6]\n" in body
    for prose in ("as stated in", "as mentioned in", "as discussed in", "as noted in"):
        assert prose not in body
    # no bare citation number is left at the end of a sentence or bullet
    for section in article.sections:
        for block in section.blocks:
            assert not block.text.rstrip(".").split()[-1].isdigit(), block.text


def test_ambiguous_trailing_number_is_cited_and_flagged(imported):
    report, article, _ = imported
    (block,) = [b for b in blocks_in(article, GUIDELINES, "Key Considerations") if "early stage" in b.text]
    assert block.text.endswith("at an early stage [1].")
    assert any("early stage 1" in w.message and w.position == "line 36" for w in report.warnings)


def test_references_in_listed_order(imported):
    _, article, _ = imported
    ref1, ref2 = article.references[1], article.references[2]
    assert (ref1.kind, ref1.title, ref1.source, ref1.year) == (
        "guideline",
        "Guideline Directed Topic Overview",
        "Dr.Oracle Medical Advisory Board & Editors",
        2025,
    )
    assert (ref2.kind, ref2.title, ref2.source, ref2.year) == (
        "research",
        "Evaluation of microcytosis.",
        "American family physician",
        2010,
    )
    assert sorted(article.references) == [1, 2]


def test_citations_without_a_reference_are_kept_and_reported(imported):
    report, article, _ = imported
    assert article.unresolved_references == (3, 4, 5, 6)
    unresolved_warnings = [w for w in report.warnings if "no entry in the References list" in w.message]
    assert [w.message.split()[1] for w in unresolved_warnings] == ["3", "4", "5", "6"]
    assert all(w.file == "000_19066717927554d7.txt" and w.position.startswith("line ") for w in unresolved_warnings)
    # citation 3 is first cited on page line 42 ("as stated in 2 and 3")
    assert unresolved_warnings[0].position == "line 42"


def test_related_questions(imported):
    _, article, _ = imported
    assert len(article.related_questions) == 11
    assert article.related_questions[3] == "What is the diagnostic workup for anemia (iron deficiency disorder)?"
    assert article.related_questions[-1] == "What are the treatment guidelines for lower back pain (lumbago)?"


def test_page_furniture_is_not_article_text(imported):
    _, _, out = imported
    path = next(out.glob("*.md"))
    assert "Medical Advisory Board" not in body_of(path)  # (it is in reference 1's source name)
    text = path.read_text(encoding="utf-8")
    for furniture in (
        "Educational purpose only",
        "Article Review Status",
        "Under Review",
        "View editorial policy",
        "Personalize",
        "Help us tailor your experience",
        "Which best describes you",
        "Professional Medical Disclaimer",
        "intended for healthcare professionals",
        "Have a follow-up question",
        "Our Medical A.I.",
    ):
        assert furniture not in text, furniture


# ---------------------------------------------------------------- other pages of the template

OTHER_PAGE = """\
How is hereditary haemochromatosis managed?

Medical Advisory BoardAll articles are reviewed for accuracy by our Medical Advisory Board
Article Review Status
Submitted
Under Review
Approved

Last updated: November 12, 2024View editorial policy

Personalize

Which best describes you? Your choice helps us use language that's most understandable for you.

From the Research

Venesection is the mainstay of treatment and is repeated until ferritin falls into the target range, as noted in 1-3.

Monitoring

  \u2022 Ferritin is checked regularly during the induction phase 2
  \u2022 Transferrin saturation guides maintenance [in some centres] 4

Most patients are now diagnosed before organ damage at stage 2.

References

Research

Invented review of iron overload.

Journal of Made-up Hepatology, 2019

Another invented cohort.

Imaginary Medicine, 2021

Education

A leaflet for patients.

Nowhere Health Service, 2022

Related Questions

What is the target ferritin in haemochromatosis?

Professional Medical Disclaimer

This information is intended for healthcare professionals.
"""


def test_another_page_of_the_template(tmp_path: Path):
    page = tmp_path / "page.txt"
    page.write_text(OTHER_PAGE, encoding="utf-8")
    report = run_import("seed-page", page, tmp_path / "out", status="under_review")
    (article,) = read_back(tmp_path / "out").values()
    assert report.problems == []
    assert article.id == "how-is-hereditary-haemochromatosis-managed"
    assert article.last_updated == dt.date(2024, 11, 12)
    assert article.review_status == "under_review"
    assert [s.path for s in article.sections] == [(RESEARCH,), (RESEARCH, "Monitoring")]
    first = article.sections[0].blocks[0]
    assert first.text.endswith("into the target range [1-3].")
    items = article.sections[1].blocks[:2]
    # "phase 2" could be a quantity; its sibling cites, so it is read as a citation and flagged
    assert items[0].text == "Ferritin is checked regularly during the induction phase [2]"
    assert any(w.position == "line 21" and "as citation [2]" in w.message for w in report.warnings)
    # square brackets from the page are text, not citations
    assert items[1].text == "Transferrin saturation guides maintenance [in some centres] [4]"
    assert [c.numbers for c in items[1].citations] == [(4,)]
    # a quantity is not a citation when nothing around it cites; that reading is flagged too
    last = article.sections[1].blocks[2]
    assert last.kind == "paragraph" and last.text.endswith("at stage 2.") and last.citations == []
    assert any(w.position == "line 24" and "as text, not a citation" in w.message for w in report.warnings)
    assert [(r.id, r.kind, r.source, r.year) for r in article.references.values()] == [
        (1, "research", "Journal of Made-up Hepatology", 2019),
        (2, "research", "Imaginary Medicine", 2021),
        (3, "education", "Nowhere Health Service", 2022),
    ]
    assert article.unresolved_references == (4,)
    assert article.related_questions == ("What is the target ferritin in haemochromatosis?",)
    assert "intended for healthcare professionals" not in body_of(tmp_path / "out" / f"{article.id}.md")


def test_page_without_a_date_imports_with_unknown_date(tmp_path: Path):
    page = tmp_path / "page.txt"
    page.write_text(OTHER_PAGE.replace("Last updated: November 12, 2024View editorial policy", ""), encoding="utf-8")
    report = run_import("seed-page", page, tmp_path / "out")
    (article,) = read_back(tmp_path / "out").values()
    assert article.last_updated is None
    assert "last_updated: unknown\n" in (tmp_path / "out" / f"{article.id}.md").read_text(encoding="utf-8")
    assert any("Last updated" in w.message for w in report.warnings)


def test_page_without_parts_is_reported_not_written(tmp_path: Path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "a.txt").write_text("Just a title\n\nSome text that is not an article.\n", encoding="utf-8")
    (tmp_path / "pages" / "b.txt").write_text(OTHER_PAGE, encoding="utf-8")
    report = run_import("seed-page", tmp_path / "pages", tmp_path / "out")
    assert report.written == 1
    assert report.skipped == {"page: no article text": 1}
    (problem,) = report.problems
    assert (problem.file, problem.position) == ("a.txt", "line 1")

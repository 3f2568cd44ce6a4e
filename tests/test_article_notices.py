"""Notices on references (retracted, expression of concern, erratum, retraction notice):
parsed into typed values, round-tripped, and every bad notice an error with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from indexer.articles import NOTICE_TYPES, ArticleInvalid, Notice, Reference, parse_article

HEAD = """\
---
id: notices
title: Does megadose iron work?
review_status: submitted
last_updated: 2025-01-02
references:
  - id: 1
    kind: research
    title: An invented trial
    source: Invented Journal
    pmid: "90000001"
    notices:
"""  # the first notice starts on line 13
BODY = """\
  - id: 2
    kind: guideline
    title: An invented guideline
    source: An invented society
---

## Evidence
Megadose iron was reported to work [1]. Daily or alternate-day dosing is advised [2].
"""


def write(tmp_path: Path, notices_yaml: str) -> Path:
    path = tmp_path / "a.md"
    path.write_text(HEAD + notices_yaml + BODY, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(ArticleInvalid) as info:
        parse_article(path)
    assert all(p.file == str(path) for p in info.value.problems)
    return [(p.line, p.message) for p in info.value.problems]


def test_notices_are_parsed_typed_and_kept_in_order(tmp_path: Path):
    path = write(
        tmp_path,
        "      - type: retracted\n"
        "        pmid: '90000002'\n"
        "        citation: Invented J Haematol. 2016;1:1\n"
        "      - type: expression_of_concern\n"
        "        pmid: 90000003\n"  # a bare number is read as its digits
        "      - type: erratum\n"
        "        note: 'Dose   corrected\n          in table 2'\n"
        "      - type: retraction_notice\n",
    )
    article = parse_article(path)
    ref = article.references[1]
    assert ref.notices == (
        Notice("retracted", "90000002", "Invented J Haematol. 2016;1:1"),
        Notice("expression_of_concern", "90000003"),
        Notice("erratum", note="Dose corrected in table 2"),
        Notice("retraction_notice"),
    )
    assert ref.retracted and article.retracted
    assert not article.references[2].retracted and article.references[2].notices == ()
    assert [ref_id for ref_id, _ in article.notices()] == [1, 1, 1, 1]
    assert ref.to_dict()["notices"][0] == {"type": "retracted", "pmid": "90000002", "citation": "Invented J Haematol. 2016;1:1"}
    assert "notices" not in article.references[2].to_dict()


@pytest.mark.parametrize("notice_type", NOTICE_TYPES)
def test_round_trip_through_front_matter(tmp_path: Path, notice_type: str):
    """A Reference written as front matter from its to_dict parses back to the same Reference."""
    notice = Notice(notice_type, "90000009", "Invented J. 2020;1:1", "a note: with [brackets], 'quotes' and # a hash")
    original = Reference(1, "research", "An invented trial", "Invented Journal", year=2015, pmid="90000001", authors=("Example A",), notices=(notice,))
    guideline = Reference(2, "guideline", "An invented guideline", "An invented society")
    front = {"id": "notices", "title": "T", "review_status": "submitted", "last_updated": "2025-01-02",
             "references": [original.to_dict(), guideline.to_dict()]}
    path = tmp_path / "a.md"
    path.write_text(f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n{BODY.split('---', 1)[1].lstrip()}", encoding="utf-8")
    parsed = parse_article(path).references
    assert parsed == {1: original, 2: guideline}
    assert parsed[1].to_dict() == original.to_dict()


def test_no_notices_and_an_empty_list_are_the_same(tmp_path: Path):
    assert parse_article(write(tmp_path, "      []\n")).references[1].notices == ()
    assert parse_article(write(tmp_path, "")).references[1].notices == ()  # "notices:" with nothing is null


@pytest.mark.parametrize(
    "notices_yaml, line, message",
    [
        ("      - type: withdrawn\n", 13, "reference 1 has a notice of unknown type 'withdrawn'; expected one of retracted, expression_of_concern, erratum, retraction_notice"),
        ("      - type: retracted\n      - pmid: '1'\n", 14, "reference 1 has a notice of unknown type None"),
        ("      - type: retracted\n        pmid: PMC123\n", 13, "reference 1: notice pmid must be digits only, got 'PMC123'"),
        ("      - type: retracted\n        pmid: '12 34'\n", 13, "reference 1: notice pmid must be digits only, got '12 34'"),
        ("      - type: retracted\n        pmid: -5\n", 13, "reference 1: notice pmid must be digits only, got -5"),
        ("      - type: retracted\n        reason: misconduct\n", 13, "reference 1: unknown notice field(s): reason"),
        ("      - type: erratum\n        note: [a, b]\n", 13, "reference 1: notice note must be text"),
        ("      - retracted\n", 13, "reference 1: each notice must be a mapping with a type"),
        ("      retracted\n", 13, "reference 1: notices must be a list of entries"),
    ],
)
def test_a_bad_notice_is_an_error_with_its_line(tmp_path: Path, notices_yaml: str, line: int, message: str):
    problems = problems_of(write(tmp_path, notices_yaml))
    assert len(problems) == 1
    (found_line, found_message), = problems
    assert found_line == line and found_message.startswith(message), problems

"""Helpers for the importer tests: where real inputs live, and reading imports back with the
corpus parser. Fixtures live in conftest.py beside this file."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.articles import Article, ArticleInvalid, parse_article

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
SEED_PAGE = SHARED / "seeds" / "000_19066717927554d7.txt"
MEDQUAD = SHARED / "data" / "medquad"
CASES = SHARED / "cases"

# Real MedQuAD files, each chosen for a shape it has.
MEDQUAD_SAMPLE = [
    "1_CancerGov_QA/0000001_1.xml",  # Key Points and "- " bullets run together with spaces
    "1_CancerGov_QA/0000013_2_1.xml",  # these two share Document id="0000013_2"
    "1_CancerGov_QA/0000013_2_2.xml",
    "2_GARD_QA/0002080.xml",  # one of its two answers is empty
    "2_GARD_QA/0002079.xml",  # its only answer is empty
    "3_GHR_QA/0000005.xml",  # synonyms, CUIs
    "5_NIDDK_QA/0000056.xml",  # no QAPairs at all
    "6_NINDS_QA/0000007.xml",  # odd vocabulary: <doc docid= corpus=>, <doctitle-focus>, <pair>, <answer>
    "9_CDC_QA/0000397.xml",  # odd vocabulary: <DiseaseFile fid=>, <UMLS> with empty CUI
    "10_MPlus_ADAM_QA/0000001.xml",  # answers removed for copyright
    "11_MPlusDrugs_QA/0000001.xml",  # answers removed for copyright
]


def read_back(out_dir: Path) -> dict[str, Article]:
    """Every imported file parsed with the corpus parser; fails the test listing every problem."""
    articles: dict[str, Article] = {}
    problems: list[str] = []
    for path in sorted(out_dir.glob("*.md")):
        try:
            article = parse_article(path)
        except ArticleInvalid as exc:
            problems.extend(str(p) for p in exc.problems)
            continue
        assert article.id not in articles, f"duplicate id {article.id}"
        articles[article.id] = article
    assert not problems, "imported articles do not parse:\n" + "\n".join(problems[:20])
    return articles


def link_sample(root: Path, dest: Path, files: list[str]) -> Path:
    """A MedQuAD-shaped folder of symlinks to the real files (nothing is copied)."""
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(root / rel)
    return dest


def case_file(relative: str) -> Path:
    """A file from shared/cases, or skip the test when shared/ is not beside the repository."""
    path = CASES / relative
    if not path.is_file():
        pytest.skip(f"case file not found at {path} (shared/ must sit beside the repository)")
    return path


def snapshot(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


def body_of(path: Path) -> str:
    """The markdown after the front matter."""
    text = path.read_text(encoding="utf-8")
    return text.split("\n---\n", 1)[1]

"""Helpers and fixtures for the importer tests: where real inputs live, and reading imports back
with the corpus parser. (Not a conftest.py: tests/conftest.py is imported by name elsewhere.)"""

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


def snapshot(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


def body_of(path: Path) -> str:
    """The markdown after the front matter."""
    text = path.read_text(encoding="utf-8")
    return text.split("\n---\n", 1)[1]


@pytest.fixture
def seed_page() -> Path:
    if not SEED_PAGE.is_file():
        pytest.skip(f"seed page not found at {SEED_PAGE} (shared/ must sit beside the repository)")
    return SEED_PAGE


@pytest.fixture(scope="session")
def medquad_root() -> Path:
    if not (MEDQUAD / "1_CancerGov_QA").is_dir():
        pytest.skip(f"MedQuAD not found at {MEDQUAD} (shared/data/medquad must sit beside the repository)")
    return MEDQUAD

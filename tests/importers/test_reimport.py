"""Every importer: importing the same source twice gives byte-identical files, and importing
again over its own output changes nothing."""

from pathlib import Path

import pytest

from indexer.importers import run_import

from import_helpers import FIXTURES, MEDQUAD, SAMPLE, SEED_PAGE, link_sample, snapshot


def _medquad_sample(tmp_path: Path) -> Path:
    if not (MEDQUAD / "1_CancerGov_QA").is_dir():
        pytest.skip(f"MedQuAD not found at {MEDQUAD} (shared/data/medquad must sit beside the repository)")
    return link_sample(MEDQUAD, tmp_path / "medquad", SAMPLE)


def _seed_page(tmp_path: Path) -> Path:
    if not SEED_PAGE.is_file():
        pytest.skip(f"seed page not found at {SEED_PAGE} (shared/ must sit beside the repository)")
    return SEED_PAGE


SOURCES = {
    "beir": lambda tmp: FIXTURES / "beir" / "corpus.jsonl",
    "pubmed": lambda tmp: FIXTURES / "pubmed" / "articles.xml",
    "medquad": _medquad_sample,
    "seed-page": _seed_page,
}


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_reimport_is_byte_identical(fmt: str, tmp_path: Path):
    source = SOURCES[fmt](tmp_path)
    first = run_import(fmt, source, tmp_path / "a")
    run_import(fmt, source, tmp_path / "b")
    assert first.written > 0
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    before = snapshot(tmp_path / "a")
    run_import(fmt, source, tmp_path / "a")
    assert snapshot(tmp_path / "a") == before

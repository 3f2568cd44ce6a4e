"""Every format: the same source imported twice gives byte-identical files, and importing
again into the same folder leaves it exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.importers import run_import

from import_helpers import FIXTURES, MEDQUAD_SAMPLE, case_file, link_sample, read_back, snapshot

# format, and how to get its source (a test fixture's name, a fixture file, or a shared case)
SOURCES: dict[str, tuple[str, Callable[[pytest.FixtureRequest, Path], Path]]] = {
    "seed-page": ("seed-page", lambda request, tmp: request.getfixturevalue("seed_page")),
    "medquad": (
        "medquad",
        lambda request, tmp: link_sample(request.getfixturevalue("medquad_root"), tmp / "medquad", MEDQUAD_SAMPLE),
    ),
    "beir": ("beir", lambda request, tmp: FIXTURES / "beir" / "corpus.jsonl"),
    "beir-case-09-title-only": ("beir", lambda request, tmp: case_file("09-beir-empty/corpus.jsonl")),
    "pubmed": ("pubmed", lambda request, tmp: FIXTURES / "pubmed"),
    "pubmed-case-07-retracted": ("pubmed", lambda request, tmp: case_file("07-pubmed-retracted/retracted.xml")),
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_reimport_is_byte_identical(name: str, request: pytest.FixtureRequest, tmp_path: Path):
    fmt, source_of = SOURCES[name]
    source = source_of(request, tmp_path)
    first = run_import(fmt, source, tmp_path / "a")
    assert first.written > 0
    run_import(fmt, source, tmp_path / "b")
    files = snapshot(tmp_path / "a")
    assert files == snapshot(tmp_path / "b")
    run_import(fmt, source, tmp_path / "a")
    assert snapshot(tmp_path / "a") == files
    assert len(read_back(tmp_path / "a")) == first.written

"""Fixtures for the importer tests: the shared seed page and MedQuAD, skipped with a reason when absent."""

from pathlib import Path

import pytest

from import_helpers import MEDQUAD, SEED_PAGE


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

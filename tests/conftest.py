from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import FakeEmbedder
from pg_server import fresh_database, postgres_url  # noqa: F401  (fixtures for the `postgres` tier)
from sample_articles import MICRO_BODY, TREAT_BODY, article
from state_backends import store_at  # noqa: F401 - a store test on SQLite and on PostgreSQL

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# Model-tier tests index into temporary folders, and the ONNX export follows the index root
# (Settings.onnx_cache_dir): without this, each of them would export the model again (torch
# loaded, seconds each). They share the repository's export, as `make serve` does; tests of
# where the export goes set or clear MEDKB_ONNX_DIR themselves.
os.environ.setdefault("MEDKB_ONNX_DIR", str(REPO / "var" / "onnx"))


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """Two valid articles written inside the test."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "microcytosis.md").write_text(article("microcytosis", "What are the causes of chronic microcytosis?", MICRO_BODY))
    (corpus / "iron-treatment.md").write_text(article("iron-treatment", "How is iron deficiency treated?", TREAT_BODY, status="submitted"))
    return corpus


@pytest.fixture(scope="session")
def default_corpus_index(tmp_path_factory) -> Path:
    """The default corpus (corpus/) indexed once per test session with the fake embedder; its index
    root. Tests read it and keep their own state (conversations, reviews, answers) elsewhere."""
    from indexer.build import build_index

    root = tmp_path_factory.mktemp("default-corpus") / "index"
    build_index([REPO / "corpus"], root, FakeEmbedder())
    return root


@pytest.fixture(scope="session")
def real_index(tmp_path_factory):
    """The default corpus indexed once per test session with the real packaged model, in the
    eval cache slot `medkb eval --cache-dir` uses, so every model-tier test shares one build.
    Returns (index root, the index command's stdout, the cache root)."""
    from evals.pipeline import cache_slot
    from indexer.embedding import model_identity

    cache = tmp_path_factory.mktemp("real-model") / "cache"
    root = cache_slot([REPO / "corpus"], cache, model=model_identity())  # the configured encoder, as the command below uses
    out = subprocess.run([sys.executable, "-m", "medkb.cli", "index", str(REPO / "corpus"), "--index-dir", str(root), "--strict"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return root, out.stdout, cache


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        reason = "Debian's chromium and chromium-driver are not installed (`make test` installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # selenium must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages, e.g. CSP violations
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield drv
    drv.quit()

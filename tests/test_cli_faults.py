"""Faults a new user or operator hits on the command line: each is one clear line and an exit
status, never a traceback, and nothing the CLI prints claims more than the review log says.

The commands run as real processes with the fake embedder (tests/fake_model_cli.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sample_articles import MICRO_BODY, TREAT_BODY, article

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
FAKE_CLI = [sys.executable, str(TESTS / "fake_model_cli.py")]


def medkb(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FAKE_CLI, *args], capture_output=True, text=True, cwd=REPO, env={**ENV, **(env or {})}, timeout=timeout)


def one_clear_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The error the command printed: no traceback, and the words a reader needs."""
    err = proc.stderr
    assert "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture(scope="module")
def claimed_index(tmp_path_factory):
    """An index of two articles whose front matter claims `approved`; no review approves either."""
    base = tmp_path_factory.mktemp("claimed")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "microcytosis.md").write_text(article("microcytosis", "What are the causes of chronic microcytosis?", MICRO_BODY, status="approved"))
    (corpus / "iron-treatment.md").write_text(article("iron-treatment", "How is iron deficiency treated?", TREAT_BODY, status="approved"))
    root = base / "index"
    proc = medkb("index", str(corpus), "--index-dir", str(root))
    assert proc.returncode == 0, proc.stderr
    return root


def test_search_json_shows_the_derived_status_never_the_front_matters_claim(claimed_index):
    proc = medkb("search", "causes of chronic microcytosis", "-k", "3", "--json", "--index-dir", str(claimed_index))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["results"], "the query finds passages"
    for passage in out["results"]:  # the API's shape: the status derived from the (empty) review log
        assert passage["review_status"] == "submitted" and passage["caution"] and passage["review"]["approved"] is False, passage
    assert '"review_status": "approved"' not in proc.stdout, "no reviewer approved these articles"

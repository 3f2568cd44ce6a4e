"""Stateless replicas: two `medkb serve` processes (real uvicorn, on two ports) with
MEDKB_BACKEND=postgres against one PostgreSQL database. A conversation started on one
continues on the other, a review recorded on one shows in the other's search results at
once, and neither replica writes a SQLite file.

The search index is the embedded one: both replicas read the same published index folder,
built by `medkb index` with the fake embedder (`tests/fake_model_cli.py` runs the command line
without the real model), which also notes the indexed versions in the shared review log.
What is shared through PostgreSQL here is the state above the index."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from retrieval.reviews import ReviewStore

from live_server import serve_medkb
from pg_server import new_database
from review_helpers import PASSWORD, accounts

pytestmark = pytest.mark.postgres

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_two_replicas_share_conversations_and_reviews(postgres_url, tiny_corpus, tmp_path):
    url = new_database(postgres_url)
    index = tmp_path / "var" / "index"
    sqlite_files = {name: tmp_path / "var" / f"{name}.sqlite" for name in ("conversations", "answers", "reviews", "accounts")}
    env = dict(os.environ, MEDKB_BACKEND="postgres", MEDKB_DATABASE_URL=url, MEDKB_INDEX_DIR=str(index), MEDKB_CORPUS=str(tiny_corpus),
               MEDKB_CONVERSATIONS_DB=str(sqlite_files["conversations"]), MEDKB_ANSWERS_DB=str(sqlite_files["answers"]),
               MEDKB_REVIEWS_DB=str(sqlite_files["reviews"]), MEDKB_ACCOUNTS_DB=str(sqlite_files["accounts"]),
               MEDKB_RELOAD_SECONDS="0", PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
    built = subprocess.run([sys.executable, str(TESTS / "fake_model_cli.py"), "index", str(tiny_corpus), "--index-dir", str(index)],
                           cwd=REPO, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert "(log: postgresql://" in built.stdout, built.stdout
    assert {v.article_id for v in ReviewStore(url).versions()} == {"microcytosis", "iron-treatment"}, "indexing notes versions in the shared log"
    reviewer = accounts(url)  # the account lives in the database: any replica signs it in
    reviewer.add("rev", "reviewer", PASSWORD, "Dr Rhea Viewer", "MD, haematology", "None declared")
    token = reviewer.new_token("rev")[1]
    with ExitStack() as stack:
        a = stack.enter_context(serve_medkb(env, tmp_path / "a.log"))
        b = stack.enter_context(serve_medkb(env, tmp_path / "b.log"))
        assert a != b
        for base in (a, b):
            health = httpx.get(f"{base}/healthz", timeout=10).json()
            assert health["status"] == "ok" and health["conversations"]["status"] == "ok", health

        # A conversation started on A continues on B, then on A again.
        first = httpx.post(f"{a}/api/ask", json={"question": "What is iron deficiency?"}, timeout=30).json()
        cid = first["conversation_id"]
        assert cid, first
        second = httpx.post(f"{b}/api/ask", json={"question": "how is it treated?", "conversation_id": cid}, timeout=30).json()
        assert second["conversation_id"] == cid and second["resolved_query"] == "how is iron deficiency treated?", second
        assert any(p["article_id"] == "iron-treatment" for g in second["groups"] for p in g["passages"])
        third = httpx.post(f"{a}/api/ask", json={"question": "and the dose?", "conversation_id": cid}, timeout=30)
        assert third.status_code == 200 and third.json()["conversation_id"] == cid, third.text
        # The permalink of an answer given by B reads back on A.
        assert second["answer_id"] and httpx.get(f"{a}/api/answers/{second['answer_id']}", timeout=10).json()["question"] == "how is it treated?"

        # A review recorded on A is in B's search results at once (no rebuild, no restart).
        query = {"q": "lead poisoning sideroblastic", "k": 3}
        before = httpx.get(f"{b}/api/search", params=query, timeout=30).json()["results"][0]
        assert before["article_id"] == "microcytosis" and before["review_status"] != "approved", before
        sha = httpx.get(f"{a}/api/articles/microcytosis", timeout=10).json()["content_sha256"]
        decided = httpx.post(f"{a}/api/articles/microcytosis/reviews", headers={"Authorization": f"Bearer {token}"},
                             json={"decision": "approve", "content_sha256": sha, "comment": "checked"}, timeout=30)
        assert decided.status_code == 201, decided.text
        after = httpx.get(f"{b}/api/search", params=query, timeout=30).json()["results"][0]
        assert after["article_id"] == "microcytosis" and after["review_status"] == "approved" and after["review"]["approved"], after
        assert after["review"]["decided_by"]["name"] == "rev"
        article = httpx.get(f"{b}/api/articles/microcytosis", timeout=10).json()
        assert [(h["decision"], h["comment"]) for h in article["history"]] == [("approve", "checked")], article

    assert not [p for p in sqlite_files.values() if p.exists()], "with MEDKB_BACKEND=postgres no replica keeps state in a local file"

"""Cases 01, 03 and 04 through /api/ask: the answer a clinician reads keeps each sentence whole,
never shows uncited text under a citation, and shows a table row with its column headers."""

import json
import re

import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.citations import CITATION_RE
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from paths import CASES


def ask_case(folder: str, tmp_path) -> list[dict]:
    case = CASES / folder
    if not case.is_dir():
        pytest.skip(f"case folder not found at {case} (shared/ must sit beside the repository)")
    root = tmp_path / "index"
    build_index([case], root, FakeEmbedder())
    settings = Settings(index_dir=root, conversations_db=tmp_path / "c.sqlite")
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    answers = []
    with TestClient(app) as client:
        conversation = None
        for turn in json.loads((case / "conversation.json").read_text())["turns"]:
            body = {"question": turn, **({"conversation_id": conversation} if conversation else {})}
            r = client.post("/api/ask", json=body)
            assert r.status_code == 200, r.text
            answers.append(r.json())
            conversation = answers[-1]["conversation_id"]
    return answers


def test_case_01_no_uncited_dose_is_shown_under_a_citation(tmp_path):
    (answer,) = ask_case("01-unit-full-stop", tmp_path)
    points = [p["text"] for p in answer["key_points"]]
    assert points and all(CITATION_RE.search(p) for p in points), "every key point carries its citation"
    assert not any("65 mg" in p for p in points), "the uncited dose sentence is not merged into a cited one"
    assert any(p.startswith("Taking iron on alternate days") for p in points)


def test_case_03_key_point_keeps_the_initialism_and_its_first_words(tmp_path):
    (answer,) = ask_case("03-multi-period", tmp_path)
    texts = [p["text"] for p in answer["key_points"]]
    assert any(t.startswith("In the U.K.") for t in texts), texts
    assert not any(re.match(r"^K\.|^NICE", t) for t in texts), "no key point starts after the initialism"


def test_case_04_a_table_row_is_shown_with_its_headers(tmp_path):
    (answer,) = ask_case("04-gfm-table", tmp_path)
    shown = [p["text"] for p in answer["key_points"]] + [p["text"] for g in answer["groups"] for p in g["passages"]]
    assert any("Dabigatran" in t and "High bleeding risk: 72 h" in t for t in shown), shown
    for point in answer["key_points"]:
        assert "\n" not in point["text"], "a key point is one row, never several"

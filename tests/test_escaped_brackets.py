"""An escaped bracket ("\\[3]") is text, never a citation: not in the chunk's citations, not
renumbered in an answer, not linked on the page (found by trying medkb as a new user)."""

from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from sample_articles import article

BODY = r"""
## From the Guidelines

Toddlers need iron in their diet, and the escaped bracket \[3] in this sentence is not a citation [1].

## From the Research

Iron supplements in toddlers raise ferritin [2].
"""


def test_an_escaped_bracket_is_never_read_as_a_citation(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "t.md").write_text(article("toddlers", "Do toddlers need iron?", BODY))
    build_index([corpus], tmp_path / "index", FakeEmbedder())
    index = load_index(tmp_path / "index")
    (chunk,) = [c for c in index.chunks if "escaped" in c.text]
    assert "bracket [3] in" in chunk.text and chunk.citations == [1]

    app = create_app(Settings(index_dir=tmp_path / "index", conversations_db=tmp_path / "c.sqlite"),
                     service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as client:
        answer = client.post("/api/ask", json={"question": "toddlers iron escaped bracket"}).json()
        (point,) = [p for p in answer["key_points"] if "escaped" in p["text"]]
        assert point["citations"] == [1] and "bracket [3] in" in point["text"], point
        assert [r["original_number"] for r in answer["references"] if r["article_id"] == "toddlers"] == [1, 2]
        page = client.get("/", params={"q": "toddlers iron escaped bracket"}).text
        assert "escaped bracket [3] in this sentence" in page and ">[3]</a>" not in page

"""A passage citing a retracted source carries a distinct warning wherever it is shown,
ranks below passages without one unless asked, and can be filtered out (case 07)."""

import textwrap

import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import Filters, SearchService
from server.app import create_app

from backend_helpers import BACKEND_PARAMS, service_over
from fakes import FakeEmbedder
from sample_articles import article

RETRACTED_REFS = textwrap.dedent("""\
  - id: 1
    kind: research
    title: An invented trial of weekly megadose oral iron
    source: Invented Journal
    year: 2015
    notices:
      - type: retracted
        pmid: "90000002"
        citation: Invented J. 2016;1:1
""")
SOUND_REFS = textwrap.dedent("""\
  - id: 1
    kind: research
    title: A sound review of oral iron
    source: A journal
    year: 2020
""")
# Both say nearly the same, so the retracted one would rank first on its words alone.
RETRACTED_BODY = "## From the Research\n\nWeekly megadose oral iron cures iron deficiency anaemia in one week of oral iron [1].\n"
SOUND_BODY = "## From the Research\n\nOral iron on alternate days treats iron deficiency anaemia [1].\n"


@pytest.fixture
def index_root(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "retracted.md").write_text(article("megadose", "Does weekly megadose oral iron cure iron deficiency anaemia?", RETRACTED_BODY, references=RETRACTED_REFS))
    (corpus / "sound.md").write_text(article("alternate", "How is oral iron dosed?", SOUND_BODY, references=SOUND_REFS))
    root = tmp_path / "index"
    build_index([corpus], root, FakeEmbedder())
    return root


@pytest.fixture(params=BACKEND_PARAMS)
def service(index_root, request):
    """The build searched through each backend (the postgres one in the `postgres` tier)."""
    return service_over(index_root, request.param, request)


QUERY = "weekly megadose oral iron cures iron deficiency anaemia"


def test_retracted_source_ranks_last_unless_asked_and_can_be_excluded(service):
    include = [h.chunk.article_id for h in service.search(QUERY, 5, Filters(retracted="include")).hits]
    assert include[0] == "megadose", "on its words alone the retracted passage would rank first"
    assert [h.chunk.article_id for h in service.search(QUERY, 5).hits] == ["alternate", "megadose"]
    assert [h.chunk.article_id for h in service.search(QUERY, 5, Filters(retracted="exclude")).hits] == ["alternate"]


def test_retraction_is_shown_in_search_answers_and_the_page(index_root):
    settings = Settings(index_dir=index_root, conversations_db=index_root.parent / "c.sqlite")
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as client:
        results = client.get("/api/search", params={"q": QUERY}).json()["results"]
        flagged = [p for p in results if p["article_id"] == "megadose"]
        assert flagged and flagged[0]["retraction_warning"]
        (ref,) = flagged[0]["references"]
        assert ref["retracted"] and ref["notices"] == [{"type": "retracted", "pmid": "90000002", "citation": "Invented J. 2016;1:1", "note": None}]
        assert all(p["retraction_warning"] is None for p in results if p["article_id"] != "megadose")
        assert [p["article_id"] for p in client.get("/api/search", params={"q": QUERY, "retracted": "exclude"}).json()["results"]] == ["alternate"]
        assert client.get("/api/search", params={"q": QUERY, "retracted": "sometimes"}).status_code == 422

        answer = client.post("/api/ask", json={"question": QUERY, "filters": {"retracted": "include"}}).json()
        passages = [p for g in answer["groups"] for p in g["passages"] if p["article_id"] == "megadose"]
        assert passages and passages[0]["retraction_warning"]
        assert any(r["retracted"] for r in answer["references"])

        page = client.get("/", params={"q": QUERY}).text
        assert 'class="retraction-warning"' in page and "Retracted" in page and "PMID 90000002" in page


def test_an_article_citing_a_retracted_source_cannot_be_approved(tmp_path):
    from indexer.articles import ArticleInvalid, parse_article

    path = tmp_path / "a.md"
    path.write_text(article("megadose", "Does megadose iron work?", RETRACTED_BODY, references=RETRACTED_REFS, status="approved"))
    with pytest.raises(ArticleInvalid) as info:
        parse_article(path)
    (problem,) = info.value.problems
    assert problem.line == 4 and "retracted source (reference 1) cannot be approved" in problem.message

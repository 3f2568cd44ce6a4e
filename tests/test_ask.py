"""POST /api/ask on a tiny corpus with the fake embedder: cited key points, one numbering
across the answer, grouped passages, review status and caution, follow-ups."""


import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.citations import find_citations
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from backend_helpers import BACKEND_PARAMS, service_factory
from fakes import FakeEmbedder
from sample_articles import article

UNREFERENCED = """
## Text

Iron deficiency treated with oral iron usually responds within weeks. Ferritin is rechecked after treatment.
"""


def make_app(tiny_corpus, tmp_path, backend="embedded", request=None):
    (tiny_corpus / "plain.md").write_text(article("plain-source", "Iron notes", UNREFERENCED, references="[]\n", status="submitted"))
    root = tmp_path / "index"
    if not (root / "current").exists():
        build_index([tiny_corpus], root, FakeEmbedder())
    settings = Settings(index_dir=root, conversations_db=tmp_path / "conversations.sqlite")
    if backend == "embedded":
        return create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    return create_app(settings, service_factory=service_factory(root, backend, request))


@pytest.fixture(params=BACKEND_PARAMS)
def client(tiny_corpus, tmp_path, request):
    """The app answering through each search backend (the postgres one in the `postgres` tier)."""
    with TestClient(make_app(tiny_corpus, tmp_path, request.param, request), raise_server_exceptions=False) as c:
        yield c


def test_answer_is_cited_and_numbered_once(client):
    r = client.post("/api/ask", json={"question": "causes of chronic microcytosis lead sideroblastic", "k": 6})
    assert r.status_code == 200
    a = r.json()
    refs = {ref["number"]: ref for ref in a["references"]}
    assert sorted(refs) == list(range(1, len(refs) + 1))
    seen = {}
    for ref in a["references"]:
        key = (ref["article_id"], ref["original_number"])
        assert key not in seen, "one number per reference across the answer"
        seen[key] = ref["number"]
    assert a["key_points"]
    for point in a["key_points"]:
        numbers = sorted({n for span in find_citations(point["text"]) for n in span.numbers})
        assert numbers and numbers == sorted(point["citations"]), "no key point without its citation"
        assert all(point["article_id"] in {c["article_id"] for c in refs[n]["cited_in"]} for n in numbers)
    micro = [p for g in a["groups"] for p in g["passages"] if p["article_id"] == "microcytosis"]
    lead = next(p for p in micro if "Lead poisoning" in p["text"])
    number = {refs[n]["original_number"]: n for n in lead["citations"]}
    assert refs[number[2]]["title"] == "A review" and refs[number[1]]["kind"] == "guideline"
    assert [g["name"] for g in a["groups"]] == ["guidelines", "research", "other"]
    assert all(p["section_path"][0] == "From the Guidelines" for p in a["groups"][0]["passages"])
    assert a["caution"] and {x["review_status"] for x in a["articles"]} <= {"under_review", "submitted"}
    assert a["conversation_id"]


def test_passage_from_an_article_without_references_says_so(client):
    a = client.post("/api/ask", json={"question": "iron notes oral iron responds within weeks ferritin rechecked"}).json()
    plain = [p for g in a["groups"] for p in g["passages"] if p["article_id"] == "plain-source"]
    assert plain and plain[0]["note"] == "This passage's article lists no references."
    assert plain[0] in a["groups"][2]["passages"], "uncited sources are grouped as other sources"
    for point in a["key_points"]:
        assert point["citations"] or point["note"] == "The source article lists no references."


def test_follow_up_in_a_conversation(client):
    first = client.post("/api/ask", json={"question": "What is iron deficiency?"}).json()
    second = client.post("/api/ask", json={"question": "how is it treated?", "conversation_id": first["conversation_id"]})
    assert second.status_code == 200
    body = second.json()
    assert body["resolved_query"] == "how is iron deficiency treated?"
    assert body["conversation_id"] == first["conversation_id"]
    top = body["groups"][0]["passages"] + body["groups"][1]["passages"]
    assert any(p["article_id"] == "iron-treatment" for p in top)
    explicit = client.post("/api/ask", json={"question": "how is it treated?", "history": ["What is iron deficiency?"]}).json()
    assert explicit["resolved_query"] == "how is iron deficiency treated?"


def test_conversation_survives_a_restart(tiny_corpus, tmp_path):
    with TestClient(make_app(tiny_corpus, tmp_path)) as c:
        cid = c.post("/api/ask", json={"question": "What is iron deficiency?"}).json()["conversation_id"]
    with TestClient(make_app(tiny_corpus, tmp_path)) as c:
        r = c.post("/api/ask", json={"question": "how is it treated?", "conversation_id": cid})
    assert r.status_code == 200 and r.json()["resolved_query"] == "how is iron deficiency treated?"


@pytest.mark.parametrize("body,status,location", [
    ({"question": ""}, 422, "body.question"),
    ({}, 422, "body.question"),
    ({"question": "iron", "k": 0}, 422, "body.k"),
    ({"question": "iron", "filters": {"evidence_kind": ["opinion"]}}, 422, "body.filters.evidence_kind"),
    ({"question": "iron", "filters": {"updated_since": "soon"}}, 422, "body.filters.updated_since"),
    ({"question": "iron", "conversation_id": "unknown"}, 404, None),
    ({"question": "iron", "conversation_id": "x", "history": ["a"]}, 422, "body.history"),
    ({"question": "iron", "history": [""]}, 422, "body.history"),
    ({"question": "iron", "surprise": True}, 422, "body.surprise"),
])
def test_bad_asks_get_the_error_shape(client, body, status, location):
    r = client.post("/api/ask", json=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"status", "code", "message", "details"} and error["status"] == status
    if location:
        assert any(d["location"] == location or d["location"].startswith(location + ".") for d in error["details"])


def test_malformed_json_is_a_422(client):
    r = client.post("/api/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"

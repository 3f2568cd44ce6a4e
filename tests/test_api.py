"""The JSON API and the page through the ASGI app in-process, on a tiny corpus and a fake model."""

import html
import re
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from review_helpers import record


@pytest.fixture
def app(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    build_index([tiny_corpus], root, FakeEmbedder())
    # Review statuses come from the review log beside the index: a reviewer has started on "microcytosis".
    record(tmp_path / "reviews.sqlite", load_index(root), {"microcytosis": "start_review"})
    settings = Settings(index_dir=root, max_query_chars=100, max_k=20, conversations_db=tmp_path / "conversations.sqlite",
                        max_body_bytes=4096, conversation_starts_per_minute=2)
    return create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_search_returns_ranked_cited_passages(client):
    r = client.get("/api/search", params={"q": "lead poisoning sideroblastic anaemia", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == "lead poisoning sideroblastic anaemia" and body["k"] == 3
    top = body["results"][0]
    assert top["article_id"] == "microcytosis"
    assert top["section_path"] == ["From the Guidelines", "Causes of Chronic Microcytosis"]
    assert "Lead poisoning" in top["text"]
    assert top["citations"] == [1, 2] and [r["number"] for r in top["references"]] == [1, 2]
    assert top["references"][1] == {"number": 2, "kind": "research", "title": "A review", "source": "A journal", "year": 2019,
                                   "authors": [], "identifiers": {"pmid": "12345", "doi": None, "url": None},
                                   "notices": [], "retracted": False}
    assert top["review_status"] == "under_review" and top["review_status_label"] == "Under review"
    assert top["caution"] and top["last_updated"] == "2025-04-05"
    scores = [p["score"] for p in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert [p["rank"] for p in body["results"]] == [1, 2, 3]


def test_results_are_deterministic(client):
    runs = [client.get("/api/search", params={"q": "iron", "k": 10}).json()["results"] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_filters(client):
    r = client.get("/api/search", params={"q": "iron", "status": "submitted", "k": 20}).json()
    assert r["results"] and {p["article_id"] for p in r["results"]} == {"iron-treatment"}
    r = client.get("/api/search", params={"q": "iron", "kind": "guideline", "k": 20}).json()
    assert r["results"] and all("guideline" in p["evidence_kinds"] for p in r["results"])
    r = client.get("/api/search", params={"q": "iron", "updated_since": "2030-01-01"}).json()
    assert r["results"] == []


def test_filters_have_one_name_and_the_old_names_still_work(client):
    new = client.get("/api/search", params={"q": "iron", "review_status": "submitted", "evidence_kind": "research", "k": 20}).json()
    old = client.get("/api/search", params={"q": "iron", "status": "submitted", "kind": "research", "k": 20}).json()
    assert new["results"] and new["results"] == old["results"]
    assert {p["article_id"] for p in new["results"]} == {"iron-treatment"}
    params = {p["name"]: p for p in client.get("/openapi.json").json()["paths"]["/api/search"]["get"]["parameters"]}
    assert params["status"].get("deprecated") and params["kind"].get("deprecated") and not params["review_status"].get("deprecated")


def test_health(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["articles"] == 2
    head = client.head("/healthz")  # what uptime monitors send
    assert head.status_code == 200 and head.headers["content-type"] == "application/json"


JSON = {"content-type": "application/json"}


def _query(params: dict) -> dict:
    return {"params": params}


@pytest.mark.parametrize("method,url,request_args,status", [
    ("get", "/api/search", _query({}), 422),
    ("get", "/api/search", _query({"q": ""}), 422),
    ("get", "/api/search", _query({"q": "   "}), 422),
    ("get", "/api/search", _query({"q": "x" * 101}), 422),
    ("get", "/api/search", _query({"q": "iron", "k": 0}), 422),
    ("get", "/api/search", _query({"q": "iron", "k": 21}), 422),
    ("get", "/api/search", _query({"q": "iron", "k": "ten"}), 422),
    ("get", "/api/search", _query({"q": "iron", "status": "final"}), 422),
    ("get", "/api/search", _query({"q": "iron", "review_status": "final"}), 422),
    ("get", "/api/search", _query({"q": "iron", "evidence_kind": "opinion"}), 422),
    ("get", "/api/search", _query({"q": "iron", "audience": "everyone"}), 422),
    ("get", "/api/search", _query({"q": "iron", "updated_since": "last week"}), 422),
    ("get", "/api/search", _query({"q": "x" * 10_001}), 422),
    ("get", "/api/search", _query({"q": "iron", "review_status": ["submitted"] * 11}), 422),
    ("get", "/api/search?q=iron%ED%A0%80", {}, 422),  # a lone surrogate, percent-encoded: not UTF-8
    ("post", "/api/search", _query({"q": "iron"}), 405),
    ("get", "/api/nothing-here", {}, 404),
    ("post", "/api/ask", {"content": b'{"question": "iron \\ud800 deficiency"}', "headers": JSON}, 422),  # a lone surrogate in JSON
    ("post", "/api/ask", {"content": b'{"question": "iron \xff"}', "headers": JSON}, 422),  # not UTF-8
    ("post", "/api/ask", {"content": b"[" * 1500 + b"]" * 1500, "headers": JSON}, 422),  # nested deeper than json.loads goes (was 400)
    ("post", "/api/ask", {"json": {"question": "iron", "conversation_id": "x" * 65}}, 422),
    ("post", "/api/ask", {"json": {"question": "iron", "conversation_id": "a/b"}}, 422),
    ("post", "/api/ask", {"json": {"question": "iron", "conversation_id": "A" * 32}}, 404),
    ("post", "/api/ask", {"content": b'{"question": "' + b"x" * 5000 + b'"}', "headers": JSON}, 413),
    ("post", "/api/ask", {"content": iter([b"x" * 1000] * 5), "headers": JSON}, 413),  # chunked: no Content-Length
    ("post", "/api/ask", {"json": {"question": "iron"}, "repeat": 3}, 429),  # the third new conversation in a minute
])
def test_bad_requests_get_one_json_error_shape(client, method, url, request_args, status):
    request_args = dict(request_args)
    for _ in range(request_args.pop("repeat", 1)):
        r = getattr(client, method)(url, **request_args)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) == {"status", "code", "message", "details"}
    assert error["status"] == status and error["code"] and error["message"]
    assert "Traceback" not in r.text


def test_error_message_names_the_parameter(client):
    assert client.get("/api/search", params={"q": "iron", "k": 0}).json()["error"]["message"].startswith("k:")
    assert "limit is 100" in client.get("/api/search", params={"q": "x" * 101}).json()["error"]["message"]
    # A value in a list names the list, not its position ("0: Input should be ...").
    message = client.get("/api/search", params={"q": "iron", "review_status": ["approved", "bogus"]}).json()["error"]["message"]
    assert message.startswith("review_status[1]: "), message
    message = client.post("/api/ask", json={"question": "iron", "filters": {"audience": ["nobody"]}}).json()["error"]["message"]
    assert message.startswith("audience[0]: "), message
    message = client.post("/api/ask", json={"question": "iron", "history": ["ok", 5]}).json()["error"]["message"]
    assert message.startswith("history[1]: "), message


@pytest.mark.parametrize("k", [21, 500, 1000, 1001, 10**6])
def test_a_k_above_the_limit_is_refused_naming_the_limit_in_force(client, k):
    """MEDKB_MAX_K is 20 here: every k above it is told 20, never the schema's ceiling of 1000."""
    for r, location in ((client.get("/api/search", params={"q": "iron", "k": k}), "query.k"),
                        (client.post("/api/ask", json={"question": "iron", "k": k}), "body.k")):
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "invalid_request" and error["message"] == f"k: must be between 1 and 20, got {k}"
        assert error["details"] == [{"location": location, "message": f"must be between 1 and 20, got {k}"}]
    page = client.get("/", params={"q": "iron", "k": k})
    assert page.status_code == 422 and f"k: must be between 1 and 20, got {k}" in page.text


@pytest.mark.parametrize(("k", "said"), [("0", "k: must be between 1 and 20, got 0"), ("-3", "k: must be between 1 and 20, got -3"),
                                         ("21", "k: must be between 1 and 20, got 21"), ("9" * 40, "k: must be between 1 and 20, got " + "9" * 40),
                                         ("abc", "k: must be a whole number between 1 and 20, got 'abc'"),
                                         ("2.5", "k: must be a whole number between 1 and 20, got '2.5'")])
@pytest.mark.parametrize("q", ["iron", None])
def test_the_page_answers_every_bad_k_with_itself_and_the_reason(client, k, said, q):
    """A person at the search page (a link, an edited address) gets the page with what is wrong and a
    4xx, whatever is wrong with k, with or without a query; the JSON API keeps its JSON error."""
    page = client.get("/", params={"q": q, "k": k} if q else {"k": k})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html"), (page.status_code, page.text[:200])
    shown = re.findall(r'<p class="error" role="alert">(.*?)</p>', page.text)
    assert [html.unescape(m) for m in shown] == [said], shown
    assert 'name="q"' in page.text and (q is None or 'value="iron"' in page.text)
    api = client.get("/api/search", params={"q": "iron", "k": k})
    assert api.status_code == 422 and api.json()["error"]["message"].startswith("k: "), api.text


def test_the_page_answers_other_bad_parameters_with_itself(client):
    """A query over the API's ceiling too (10,000 characters): the page, not JSON. A blank k is the default."""
    page = client.get("/", params={"q": "iron " * 2001})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html") and "limit is 100" in page.text
    assert client.get("/api/search", params={"q": "iron " * 2001}).json()["error"]["code"] == "invalid_request"
    page = client.get("/", params={"q": "iron", "k": ""})
    assert page.status_code == 200 and 'class="error"' not in page.text


def test_an_ask_without_k_is_never_refused_for_a_k_it_did_not_send(tiny_corpus, tmp_path):
    """/api/ask draws on 8 passages by default: with MEDKB_MAX_K=5 (MEDKB_DEFAULT_K=5, accepted at start)
    every question without k was a 422 'k: must be between 1 and 5, got 8'."""
    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())
    settings = Settings(index_dir=tmp_path / "index", max_k=5, default_k=5, conversations_db=tmp_path / "conversations.sqlite")
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as client:
        r = client.post("/api/ask", json={"question": "iron deficiency treatment"})
        assert r.status_code == 200, r.text
        assert 0 < sum(len(group["passages"]) for group in r.json()["groups"]) <= 5
        assert client.post("/api/ask", json={"question": "iron", "k": 6}).status_code == 422  # a k that is sent is still checked


def test_unexpected_errors_never_leak_a_stack_trace(app):
    class Broken:
        def search(self, *args, **kwargs):
            raise RuntimeError("secret internal detail")

    from server.deps import get_service

    with TestClient(app, raise_server_exceptions=False) as client:
        app.dependency_overrides[get_service] = lambda: Broken()
        r = client.get("/api/search", params={"q": "iron"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "secret" not in r.text and "Traceback" not in r.text


def test_page_shows_passages_citations_badges_and_caution(client):
    r = client.get("/", params={"q": "lead poisoning sideroblastic anaemia"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'class="badge status-under_review state-under_review"' in html and "Under review" in html
    assert "Pending: under review by Dr Rhea Viewer (MD, haematology) since" in html
    assert 'id="caution"' in html and "Pending clinical review" in html
    assert "From the Guidelines › Causes of Chronic Microcytosis" in html
    assert 'class="cite" href="#r1-refs">[1, 2]</a>' in html
    assert "A review. <em>A journal</em>, 2019." in html and "PMID 12345" in html


def test_page_escapes_the_query_and_reports_bad_input(client):
    r = client.get("/", params={"q": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text
    r = client.get("/", params={"q": "x" * 101})
    assert r.status_code == 422 and "limit is 100" in r.text
    r = client.get("/")
    assert r.status_code == 200 and 'name="q"' in r.text


def test_importing_the_server_loads_no_model():
    import subprocess
    import sys

    heavy = ("sentence_transformers", "torch", "faiss", "bm25s")
    code = f"import server.app, retrieval.search, indexer.build, sys; print(*[m in sys.modules for m in {heavy!r}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.split() == ["False"] * len(heavy), dict(zip(heavy, out.stdout.split(), strict=True))


def _slow_app(tiny_corpus, tmp_path, encode_queries=None):
    """The app over the tiny corpus whose searches each wait until two are inside `search` at once
    (a barrier: searches that queued behind each other would time out there and fail)."""
    root = tmp_path / "index"
    build_index([tiny_corpus], root, FakeEmbedder())
    both_inside = threading.Barrier(2, timeout=10)

    class Model(FakeEmbedder):
        def encode_queries(self, texts):
            return encode_queries(texts) if encode_queries else super().encode_queries(texts)

    class Slow(SearchService):
        def search(self, query, *args, **kwargs):
            if query.startswith("slow"):
                both_inside.wait()
            return super().search(query, *args, **kwargs)

    settings = Settings(index_dir=root, conversations_db=tmp_path / "conversations.sqlite")
    return create_app(settings, service_factory=lambda s: Slow(load_index(s.index_dir), Model()))


def test_two_searches_run_at_once_and_the_event_loop_stays_free(tiny_corpus, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    app = _slow_app(tiny_corpus, tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.get, "/api/search", params={"q": "slow iron"})
        # While the first waits for a second search, the loop still answers other requests.
        assert client.get("/healthz").status_code == 200
        second = pool.submit(client.get, "/api/search", params={"q": "slow ferritin"})
        assert first.result(timeout=30).status_code == 200 and second.result(timeout=30).status_code == 200


def test_a_model_error_during_a_search_is_a_json_500_without_the_trace(tiny_corpus, tmp_path):
    def broken(texts):
        raise RuntimeError("secret model detail")

    app = _slow_app(tiny_corpus, tmp_path, encode_queries=broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/search", params={"q": "iron deficiency"})
        assert (r.status_code, r.headers["content-type"]) == (500, "application/json")
        assert r.json()["error"]["code"] == "internal_error" and "secret" not in r.text and "Traceback" not in r.text
        # The failure is this request's only: the next one still reaches the model (and fails the same way, not hangs).
        assert client.get("/api/search", params={"q": "ferritin"}).status_code == 500


def test_a_search_before_the_index_is_loaded_is_a_json_503(app):
    client = TestClient(app, raise_server_exceptions=False)  # not entered: the lifespan has not loaded the index
    r = client.get("/api/search", params={"q": "iron"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"

"""The HTTP surface's defences: links and the page's headers, bounded requests, invalid
Unicode, and conversations that belong to their client. In-process on a tiny corpus with
the fake model, and under a real uvicorn where the transport matters."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app
from server.guard import Guard
from server.links import http_url

from fakes import FakeEmbedder
from live_server import serve

SERVER = Path(__file__).resolve().parent.parent / "server"
EVIL = "javascript:alert(document.domain)"


def make_app(corpus: Path, tmp_path: Path, mutate=None, **overrides):
    root = tmp_path / "index"
    if not (root / "current").exists():
        build_index([corpus], root, FakeEmbedder())
    settings = Settings(index_dir=root, conversations_db=tmp_path / "conversations.sqlite", **overrides)

    def service(s: Settings) -> SearchService:
        index = load_index(s.index_dir)
        if mutate:
            mutate(index)
        return SearchService(index, FakeEmbedder())

    return create_app(settings, service_factory=service)


@pytest.fixture
def app(tiny_corpus, tmp_path):
    return make_app(tiny_corpus, tmp_path, max_query_chars=100, max_k=20)


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def ask_json(client, body: bytes, **kw):
    return client.post("/api/ask", content=body, headers={"content-type": "application/json"}, **kw)


# -- links --------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    EVIL, "JavaScript:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)", "java\nscript:alert(1)", "\x01javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "//evil.example/x", "/relative", "https:\\\\evil.example",
    "http://", "https:///path", "ftp://example.org/x", "", None, "https://exa mple.org/", "https://example.org/" + "a" * 3000,
])
def test_only_absolute_http_urls_become_links(url):
    assert http_url(url) is None


@pytest.mark.parametrize("url", ["https://example.org/a?b=c#d", "http://example.org", "HTTPS://EXAMPLE.ORG/x", "https://example.org/a'b\"c<d>"])
def test_http_urls_stay_links(url):
    assert http_url(url) == url


def _poison_references(index):
    """What the parser refuses at index time, planted in the loaded index: a reference whose
    url is javascript:, and a pmid and doi that try to leave their sites."""
    for chunk in index.chunks:
        chunk.references = tuple(
            dataclasses.replace(r, url=EVIL, pmid=None, doi=None) if r.id == 1 else dataclasses.replace(r, pmid='1"><b>x</b>/../../evil?', doi=None)
            for r in chunk.references)
    for article_id, record in list(index.articles.items()):
        index.articles[article_id] = dataclasses.replace(record, references=tuple(
            dataclasses.replace(r, url=EVIL, pmid=None, doi=None) if r.id == 1 else r for r in record.references))


def test_a_javascript_url_in_the_index_is_shown_as_text_on_the_page(tiny_corpus, tmp_path):
    with TestClient(make_app(tiny_corpus, tmp_path, mutate=_poison_references)) as c:
        html = c.get("/", params={"q": "lead poisoning sideroblastic anaemia"}).text
    assert f'<span class="url">{EVIL}</span>' in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and not [h for h in hrefs if not (h.startswith(("/", "#", "https://", "http://")))], hrefs
    assert "https://pubmed.ncbi.nlm.nih.gov/1%22%3E%3Cb%3Ex%3C%2Fb%3E%2F..%2F..%2Fevil%3F/" in html
    assert "<b>x</b>" not in html


def test_the_page_and_script_have_no_inline_script_handlers_or_styles():
    for template in (SERVER / "templates").glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"inline <script> in {template.name}"
        assert not re.search(r"\son[a-z]+\s*=", text, re.I), f"inline event handler in {template.name}"
        assert not re.search(r"\sstyle\s*=", text, re.I), f"style attribute in {template.name}"
        assert "<style" not in text and "javascript:" not in text
    for script in (SERVER / "static").glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "eval(" not in text and "new Function" not in text
        assert not re.search(r"setAttribute\(\s*[\"']on", text)
    app_js = (SERVER / "static" / "app.js").read_text()
    assert "httpUrl(r.identifiers.url)" in app_js, "the answer's source links go through httpUrl"


# -- headers and /docs ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/?q=iron", "/api/search?q=iron", "/api/search", "/healthz", "/static/app.js", "/nowhere", "/openapi.json"])
def test_every_response_carries_the_security_headers(client, path):
    r = client.get(path)
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_a_500_carries_the_headers_too(app):
    class Broken:
        def search(self, *args, **kwargs):
            raise RuntimeError("boom")

    from server.deps import get_service

    with TestClient(app, raise_server_exceptions=False) as c:
        app.dependency_overrides[get_service] = lambda: Broken()
        r = c.get("/api/search", params={"q": "iron"})
    assert r.status_code == 500 and r.headers["x-content-type-options"] == "nosniff" and "content-security-policy" in r.headers


def test_docs_are_served_from_this_server_under_the_same_policy(client):
    r = client.get("/docs")
    assert r.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert sources and all(s.startswith("/") or s.startswith("http://testserver/") for s in sources), sources
    for source in sources:
        asset = client.get(source.replace("http://testserver", ""))
        assert asset.status_code == 200 and asset.content, source
    assert "<script>" not in r.text
    assert r.headers["content-security-policy"] == client.get("/").headers["content-security-policy"]
    assert client.get("/redoc").status_code == 404


def test_docs_say_so_when_swagger_ui_is_missing(tiny_corpus, tmp_path, monkeypatch):
    import server.docs

    monkeypatch.setattr(server.docs, "swagger_ui_dir", lambda: None)
    with TestClient(make_app(tiny_corpus, tmp_path)) as c:
        r = c.get("/docs")
    assert r.status_code == 503 and "/openapi.json" in r.text and "fastapi-offline" in r.text


# -- bounded requests ---------------------------------------------------------------------

def test_limits_are_in_the_openapi_schema(client):
    spec = client.get("/openapi.json").json()
    ask = spec["components"]["schemas"]["AskIn"]["properties"]
    assert ask["question"]["maxLength"] == 100
    cid = next(b for b in ask["conversation_id"]["anyOf"] if b.get("type") == "string")
    assert cid["pattern"] == "^[A-Za-z0-9_-]{1,64}$" and cid["maxLength"] == 64
    history = next(b for b in ask["history"]["anyOf"] if b.get("type") == "array")
    assert history["maxItems"] == 20 and history["items"]["maxLength"] == 100
    k = next(b for b in ask["k"]["anyOf"] if b.get("type") == "integer")
    assert k["maximum"] == 20 and k["minimum"] == 1
    filters = spec["components"]["schemas"]["FiltersIn"]["properties"]
    assert all(filters[name]["maxItems"] == 10 for name in ("review_status", "evidence_kind", "audience"))
    params = {p["name"]: p["schema"] for p in spec["paths"]["/api/search"]["get"]["parameters"]}
    assert next(b for b in params["q"]["anyOf"] if b.get("type") == "string")["maxLength"] == 100
    assert next(b for b in params["k"]["anyOf"] if b.get("type") == "integer")["maximum"] == 20
    assert all(next(b for b in params[n]["anyOf"] if b.get("type") == "array")["maxItems"] == 10
               for n in ("review_status", "evidence_kind", "audience", "status", "kind"))
    assert "413" in spec["paths"]["/api/ask"]["post"]["responses"] and "429" in spec["paths"]["/api/ask"]["post"]["responses"]


def test_a_large_body_is_refused_before_it_is_parsed(client, app):
    limit = app.state.settings.max_body_bytes
    body = b'{"question": "' + b"x" * limit + b'"}'
    r = ask_json(client, body)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large" and r.headers["connection"] == "close"
    assert str(limit) in r.json()["error"]["message"]
    r = client.post("/api/ask", content=iter([b"x" * 65536] * 8), headers={"content-type": "application/json"})  # chunked, no length
    assert r.status_code == 413
    r = ask_json(client, b'{"question": "iron", "history": ["' + b"y" * (limit - 100) + b'"]}')
    assert r.status_code == 422, "a body within the limit reaches validation whole"


def _through_guard(headers: list[tuple[bytes, bytes]], chunks: list[bytes], limit: int = 1000):
    """Send one request through the guard alone: (whether the app ran, messages sent, chunks left unread)."""
    reached = []
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def app(scope, receive, send):
        reached.append(await receive())

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/ask", "query_string": b"", "headers": [(b"content-type", b"application/json"), *headers]}
    asyncio.run(Guard(app, max_body_bytes=limit)(scope, receive, send))
    return bool(reached), sent, len(messages)


def test_a_lying_content_length_is_counted_as_the_bytes_arrive():
    reached, sent, _ = _through_guard([(b"content-length", b"10")], [b"x" * 400] * 5)
    assert not reached and sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["status"] == 413


def test_a_refused_body_is_drained_within_bounds_so_the_client_reads_the_413():
    from server.guard import DRAIN_BYTES

    reached, sent, unread = _through_guard([(b"content-length", b"2000")], [b"x" * 400] * 5)
    assert not reached and sent[0]["status"] == 413 and unread == 0, "a small refused body is read and thrown away"
    reached, sent, unread = _through_guard([(b"content-length", str(DRAIN_BYTES + 1).encode())], [b"x" * 400] * 5)
    assert sent[0]["status"] == 413 and unread == 5, "a body too large to drain is not read at all"
    reached, sent, unread = _through_guard([(b"content-length", b"2000"), (b"expect", b"100-continue")], [b"x" * 400] * 5)
    assert sent[0]["status"] == 413 and unread == 5, "a client waiting for 100 Continue is told at once and sends nothing"
    reached, sent, _ = _through_guard([(b"content-length", b"999")], [b"y" * 999])
    assert reached and sent == [], "a body within the limit reaches the app"


@pytest.mark.parametrize("body", [
    {"question": "iron", "k": 10**30},
    {"question": "iron", "history": ["a"] * 1001},
    {"question": "iron", "filters": {"review_status": ["submitted"] * 11}},
    {"question": "iron", "conversation_id": "../../etc/passwd"},
    {"question": "iron", "conversation_id": "x" * 65},
    {"question": "iron", "conversation_id": ""},
    {"question": "x" * 10_001},
])
def test_every_field_is_bounded(client, body):
    r = client.post("/api/ask", json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_error_messages_never_echo_unbounded_input(client):
    huge_key = "k" * 100_000
    r = client.post("/api/ask", json={"question": "iron", huge_key: 1})
    assert r.status_code == 422 and len(r.content) < 2000
    r = client.post("/api/ask", json={"question": "iron", "filters": {"audience": ["nobody"] * 10, "evidence_kind": ["x"] * 10}})
    assert r.status_code == 422 and len(r.json()["error"]["details"]) <= 21 and len(r.content) < 10_000
    r = client.post("/api/ask", json={"question": "iron", "conversation_id": "A" * 64})
    assert r.status_code == 404 and len(r.json()["error"]["message"]) < 300
    page = client.get("/", params={"q": "z" * 5000})
    assert page.status_code == 422 and page.text.count("z" * 100) <= 2 and "z" * 101 not in page.text


def test_pages_never_echo_unbounded_input_either(client):
    """The review pages and sign-in echo what was sent (an article id in the path, a name in a
    form) into their text: never more of it than an identifier may hold."""
    for path in ("/articles/", "/api/articles/"):
        r = client.get(path + "x" * 5000)
        assert r.status_code == 404 and "x" * 101 not in r.text, path
    r = client.post("/signin", content=f"name={'n' * 30_000}&password=p&csrf_token=wrong&next=/{'m' * 30_000}",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "n" * 101 not in r.text and "m" * 201 not in r.text  # 400: plain http to testserver; the form again
    r = client.get("/signin", params={"next": "/" + "q" * 20_000})
    assert r.status_code == 200 and "q" * 201 not in r.text


def test_lone_surrogates_and_invalid_utf8_are_422(client):
    for body in (b'{"question": "iron \\ud800 deficiency"}', b'{"question": "iron", "history": ["\\udfff"]}',
                 b'{"question": "iron", "\\ud800": 1}', b'{"question": "iron \xff deficiency"}'):
        r = ask_json(client, body)
        assert r.status_code == 422, body
        assert set(r.json()["error"]) == {"status", "code", "message", "details"}
    assert ask_json(client, b'{"question": "iron \\ud83d\\ude00 deficiency"}').status_code == 200, "a surrogate pair is fine"
    r = client.get("/api/search?q=iron%ED%A0%80")
    assert r.status_code == 422 and "UTF-8" in r.json()["error"]["message"]
    assert client.get("/?q=iron%ff").status_code == 422


def test_a_lone_surrogate_over_real_http_keeps_the_connection(tiny_corpus, tmp_path):
    with serve(make_app(tiny_corpus, tmp_path)) as base, httpx.Client(base_url=base) as http:
        bad = http.post("/api/ask", content=b'{"question": "iron \\ud800 deficiency"}', headers={"content-type": "application/json"})
        bad_query = http.get("/api/search?q=iron%ED%A0%80")
        good = http.get("/api/search", params={"q": "iron"})
        ports = {r.extensions["network_stream"].get_extra_info("client_addr") for r in (bad, bad_query, good)}
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
        assert bad_query.status_code == 422 and good.status_code == 200
        assert len(ports) == 1, "all three went over one keep-alive connection"


def test_large_bodies_over_real_http_get_a_413_not_a_reset(tiny_corpus, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def post(size: int) -> int:
        with httpx.Client(base_url=base, timeout=60) as http:
            return http.post("/api/ask", content=b"x" * size, headers={"content-type": "application/json"}).status_code

    with serve(make_app(tiny_corpus, tmp_path)) as base:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, [300_000, 5_000_000] * 4))
        assert statuses == [413] * 8
        assert httpx.get(f"{base}/api/search", params={"q": "iron"}).status_code == 200, "the server goes on after them"


# -- conversations belong to their client --------------------------------------------------

def test_conversation_ids_are_unguessable(client):
    ids = {client.post("/api/ask", json={"question": f"iron question {i}"}).json()["conversation_id"] for i in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", i) for i in ids), ids  # 24 random bytes: 192 bits


def test_one_client_cannot_start_conversations_without_limit(tiny_corpus, tmp_path):
    app = make_app(tiny_corpus, tmp_path, conversation_starts_per_minute=3)
    with TestClient(app, client=("10.0.0.1", 1000)) as one, TestClient(app, client=("10.0.0.2", 1000)) as other:
        first = [one.post("/api/ask", json={"question": "iron deficiency"}) for _ in range(3)]
        assert all(r.status_code == 200 for r in first)
        refused = one.post("/api/ask", json={"question": "iron deficiency"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_requests"
        assert int(refused.headers["retry-after"]) >= 1
        follow = one.post("/api/ask", json={"question": "how is it treated?", "conversation_id": first[0].json()["conversation_id"]})
        assert follow.status_code == 200, "continuing a conversation is not a new one"
        assert other.post("/api/ask", json={"question": "iron deficiency"}).status_code == 200, "other clients are not affected"


def test_a_client_holding_many_conversations_loses_its_own_oldest_not_others(tmp_path):
    from retrieval.conversations import ConversationNotFound, ConversationStore

    now = [1000.0]
    store = ConversationStore(tmp_path / "c.sqlite", max_per_client=3, max_conversations=100, clock=lambda: now[0])
    theirs = store.append(None, "q", "q", client="b")
    mine = []
    for i in range(10):
        now[0] += 1
        mine.append(store.append(None, f"q{i}", f"q{i}", client="a"))
    assert store.count("a") == 3 and store.history(theirs)
    assert [bool(store.history(c)) for c in mine[-3:]] == [True] * 3
    with pytest.raises(ConversationNotFound):
        store.history(mine[0])


def test_a_conversation_dropped_between_reading_and_recording_is_a_404(client, app):
    store = app.state.conversations
    cid = client.post("/api/ask", json={"question": "What is iron deficiency?"}).json()["conversation_id"]
    read = store.history

    def read_then_lose(conversation_id):
        turns = read(conversation_id)
        store.delete(conversation_id)  # evicted or expired while the answer is being built
        return turns

    store.history = read_then_lose
    r = client.post("/api/ask", json={"question": "how is it treated?", "conversation_id": cid})
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"status", "code", "message", "details"} and r.json()["error"]["code"] == "not_found"


def test_an_expired_conversation_is_a_404(tiny_corpus, tmp_path):
    app = make_app(tiny_corpus, tmp_path)
    with TestClient(app) as c:
        cid = c.post("/api/ask", json={"question": "What is iron deficiency?"}).json()["conversation_id"]
        app.state.conversations.clock = lambda: 1e12
        r = c.post("/api/ask", json={"question": "how is it treated?", "conversation_id": cid})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# -- the page's script under its policy, in a real browser -------------------------------------

@pytest.mark.browser
def test_docs_and_answers_render_under_the_policy_in_a_real_browser(tiny_corpus, tmp_path, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    with serve(make_app(tiny_corpus, tmp_path, mutate=_poison_references)) as base:
        browser.get_log("browser")
        browser.get(base + "/docs")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
        operations = {e.text.split("\n")[0] for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {"/api/search", "/api/ask", "/healthz"} <= {o.replace("\u200b", "") for o in operations}
        blocked = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]
        assert not blocked, blocked

        browser.get(base + "/?q=lead+poisoning+sideroblastic+anaemia")
        answer = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "article.answer")))
        links = [a.get_attribute("href") for a in answer.find_elements(By.CSS_SELECTOR, "a")]
        assert links and all(h.startswith(("http://", "https://")) for h in links), links
        assert EVIL in [s.text for s in answer.find_elements(By.CSS_SELECTOR, ".refs .url")]
        blocked = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert not blocked, blocked

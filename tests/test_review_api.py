"""Reviews over HTTP, in-process on a tiny corpus with the fake embedder: who may decide
(401, 403, CSRF), approvals bound to content (409, lapse on change), decisions visible in
search and answers without a rebuild, an append-only log, sign-in and its rate limit,
the queue, the article page and what's new."""

import json
import re
import textwrap
from urllib.parse import quote
from xml.etree import ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from review_helpers import PASSWORD, add_users
from sample_articles import MICRO_BODY, TREAT_BODY, article

RETRACTED_REFS = textwrap.dedent("""\
  - id: 1
    kind: research
    title: An invented retracted trial
    source: Invented Journal
    year: 2015
    notices:
      - type: retracted
        pmid: "90000002"
""")
RETRACTED_BODY = "## From the Research\n\nWeekly megadose oral iron cures iron deficiency in a week [1].\n"


def write_corpus(corpus):
    corpus.mkdir(exist_ok=True)
    (corpus / "microcytosis.md").write_text(article("microcytosis", "What are the causes of chronic microcytosis?", MICRO_BODY,
                                                    status="submitted", extra="authors: [author]\n"))
    (corpus / "iron-treatment.md").write_text(article("iron-treatment", "How is iron deficiency treated?", TREAT_BODY, status="approved"))
    (corpus / "megadose.md").write_text(article("megadose", "Does megadose iron work?", RETRACTED_BODY, status="submitted", references=RETRACTED_REFS))


class Env:
    """A corpus, its index and accounts; state in SQLite files beside the index, or with
    `database_url` every store in that PostgreSQL database (MEDKB_BACKEND=postgres)."""

    def __init__(self, tmp_path, database_url: str | None = None, **overrides):
        self.tmp = tmp_path
        self.corpus = tmp_path / "corpus"
        self.root = tmp_path / "index"
        write_corpus(self.corpus)
        self.reindex()
        if database_url:
            overrides.update(backend="postgres", database_url=database_url)
        self.settings = Settings(index_dir=self.root, corpus_dirs=(self.corpus,), conversations_db=tmp_path / "conversations.sqlite", **overrides)
        self.accounts = add_users(self.settings.state_location(self.settings.accounts_path))
        self.tokens = {name: self.accounts.new_token(name)[1] for name in ("rev", "ed", "admin", "author")}

    def reindex(self):
        build_index([self.corpus], self.root, FakeEmbedder())

    def app(self):
        return create_app(self.settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))

    def client(self, base_url="http://localhost"):
        return TestClient(self.app(), base_url=base_url, raise_server_exceptions=False)


@pytest.fixture
def env(tmp_path, store_at):
    """On SQLite, then on PostgreSQL."""
    where = store_at("state")
    return Env(tmp_path, database_url=where if isinstance(where, str) else None)


@pytest.fixture
def client(env):
    with env.client() as c:
        yield c


def bearer(env, name):
    return {"Authorization": f"Bearer {env.tokens[name]}"}


def sha(client, article_id):
    return client.get(f"/api/articles/{article_id}").json()["content_sha256"]


def decide(client, article_id, decision, headers, content_sha256=None, comment=""):
    body = {"decision": decision, "content_sha256": content_sha256 or sha(client, article_id), "comment": comment}
    return client.post(f"/api/articles/{article_id}/reviews", json=body, headers=headers)


def assert_error(r, status, code=None):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"status", "code", "message", "details"} and error["status"] == status and error["message"]
    if code:
        assert error["code"] == code
    return error


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, name="rev", password=PASSWORD):
    token = csrf_of(client.get("/signin").text)
    return client.post("/signin", data={"csrf_token": token, "name": name, "password": password, "next": "/reviews"}, follow_redirects=False)


# ---------------------------------------------------------------- who may decide


def test_unauthenticated_is_401(client):
    error = assert_error(decide(client, "microcytosis", "approve", {}), 401, "unauthenticated")
    assert "medkb users token" in error["message"]
    r = decide(client, "microcytosis", "approve", {"Authorization": "Bearer mkb_not-a-real-token"})
    assert_error(r, 401) and r.headers["www-authenticate"].startswith("Bearer")
    assert_error(decide(client, "microcytosis", "approve", {"Authorization": "Basic cmV2OnB3"}), 401)
    assert client.get("/api/articles/microcytosis").json()["history"] == []


# The last two are JSON that json.loads gives up on other than by a syntax error (FastAPI answered them 400).
BAD_BODIES = [b"{not json", b'{"decision": "bogus", "content_sha256": "x"}', b"[]", b"",
              b"[" * 5000 + b"]" * 5000, b'{"decision": ' + b"9" * 5000 + b"}"]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_credentials_are_checked_before_the_body(client, env, body):
    """Without credentials: 401 in the one error shape whatever the body; with them, a bad body is 422."""
    url, json_type = "/api/articles/microcytosis/reviews", {"content-type": "application/json"}
    for headers in ({}, {"Authorization": "Bearer mkb_not-a-real-token"}, {"Authorization": "Basic cmV2OnB3"}):
        r = client.post(url, content=body, headers={**json_type, **headers})
        assert_error(r, 401, "unauthenticated") and r.headers["www-authenticate"].startswith("Bearer")
    assert_error(client.post(url, content=body, headers={**json_type, **bearer(env, "rev")}), 422, "invalid_request")
    sign_in(client)  # a session without its CSRF header is refused before the body is read too
    assert_error(client.post(url, content=body, headers=json_type), 403, "forbidden")
    assert client.get("/api/articles/microcytosis").json()["history"] == []


def test_the_other_authenticated_routes_check_credentials_first(client, env):
    # The feedback list: a bad page size from a stranger is 401, from a reviewer 422.
    assert_error(client.get("/api/feedback", params={"limit": 0}), 401, "unauthenticated")
    assert_error(client.get("/api/feedback", params={"limit": 0}, headers=bearer(env, "rev")), 422)
    # The review form: signed out is 401 whatever was posted (not 415 for a body that is not a form).
    r = client.post("/articles/microcytosis/reviews", content=b'{"decision": "approve"}', headers={"content-type": "application/json"})
    assert r.status_code == 401 and "Sign in" in r.text


def test_wrong_role_is_403(client, env):
    assert_error(decide(client, "microcytosis", "approve", bearer(env, "ed")), 403, "forbidden")
    assert_error(decide(client, "microcytosis", "retire", bearer(env, "rev"), comment="old"), 403, "forbidden")
    assert decide(client, "microcytosis", "start_review", bearer(env, "ed")).status_code == 201
    assert decide(client, "microcytosis", "retire", bearer(env, "ed"), comment="superseded").status_code == 201


def test_an_author_cannot_approve_their_own_article(client, env):
    error = assert_error(decide(client, "microcytosis", "approve", bearer(env, "author")), 403, "forbidden")
    assert "author" in error["message"]
    assert client.get("/api/articles/microcytosis").json()["authors"] == ["author"]
    assert decide(client, "microcytosis", "approve", bearer(env, "rev")).status_code == 201


def test_a_stale_content_hash_is_409(client, env):
    error = assert_error(decide(client, "microcytosis", "approve", bearer(env, "rev"), content_sha256="0" * 64), 409, "conflict")
    assert "not the current content" in error["message"]
    assert_error(decide(client, "microcytosis", "approve", bearer(env, "rev"), content_sha256="xyz"), 422)


def test_an_article_citing_a_retracted_source_cannot_be_approved(client, env):
    error = assert_error(decide(client, "megadose", "approve", bearer(env, "rev")), 409, "cites_retracted")
    assert "An invented retracted trial" in error["message"]
    assert decide(client, "megadose", "request_changes", bearer(env, "rev"), comment="remove the retracted trial").status_code == 201


def test_a_revoked_token_is_401(client, env):
    env.accounts.revoke_tokens("rev")
    assert_error(decide(client, "microcytosis", "approve", bearer(env, "rev")), 401)


def test_unknown_article_is_404(client, env):
    assert_error(client.get("/api/articles/nope"), 404)
    assert_error(decide(client, "nope", "approve", bearer(env, "rev"), content_sha256="0" * 64), 404)


# ---------------------------------------------------------------- status derived, joined at query time


def test_a_decision_shows_in_search_answers_filters_and_page_without_a_rebuild(client, env):
    build = client.get("/healthz").json()["build"]
    before = client.get("/api/search", params={"q": "lead poisoning sideroblastic", "k": 3}).json()["results"][0]
    assert before["article_id"] == "microcytosis" and before["review_status"] == "submitted" and before["caution"]
    assert before["review"]["note"] == "Pending: submitted, not yet reviewed by a clinician"
    assert client.get("/api/search", params={"q": "iron", "review_status": "approved"}).json()["results"] == []

    assert decide(client, "microcytosis", "approve", bearer(env, "rev"), comment="checked against BSH 2021").status_code == 201

    after = client.get("/api/search", params={"q": "lead poisoning sideroblastic", "k": 3}).json()["results"][0]
    assert after["review_status"] == "approved" and after["caution"] is None and after["review"]["approved"]
    assert re.fullmatch(r"Approved by Dr Rhea Viewer \(MD, haematology\) on \d{4}-\d{2}-\d{2}", after["review"]["note"])
    assert after["review"]["decided_by"] == {"name": "rev", "display_name": "Dr Rhea Viewer", "credentials": "MD, haematology"}
    approved_only = client.get("/api/search", params={"q": "iron", "review_status": "approved", "k": 20}).json()["results"]
    assert approved_only and {p["article_id"] for p in approved_only} == {"microcytosis"}
    answer = client.post("/api/ask", json={"question": "causes of chronic microcytosis lead", "filters": {"review_status": ["approved"]}}).json()
    assert [a["id"] for a in answer["articles"]] == ["microcytosis"] and answer["caution"] is None
    assert answer["articles"][0]["review"]["note"].startswith("Approved by Dr Rhea Viewer")
    page = client.get("/", params={"q": "lead poisoning sideroblastic"}).text
    assert "Approved by Dr Rhea Viewer (MD, haematology) on" in page
    assert client.get("/healthz").json()["build"] == build, "no rebuild"


def test_front_matter_approval_without_a_record_is_shown_as_submitted(client):
    a = client.get("/api/articles/iron-treatment").json()
    assert a["claimed_status"] == "approved" and a["review_status"] == "submitted"
    assert "no review record approves this content" in a["review"]["note"]
    hits = client.get("/api/search", params={"q": "oral iron alternate days", "k": 20}).json()["results"]
    assert all(h["review_status"] != "approved" and h["caution"] for h in hits)


def test_article_history_and_the_approval_lapsing_when_the_file_changes(env):
    with env.client() as client:
        old_sha = sha(client, "microcytosis")
        assert decide(client, "microcytosis", "start_review", bearer(env, "rev")).status_code == 201
        assert decide(client, "microcytosis", "approve", bearer(env, "rev"), comment="fine").status_code == 201
        a = client.get("/api/articles/microcytosis").json()
        assert a["review"]["state"] == "approved" and a["diff_since_approved"] is None
        assert [(h["decision"], h["reviewer"]["name"], h["content_sha256"], h["current_content"]) for h in a["history"]] == [
            ("start_review", "rev", old_sha, True), ("approve", "rev", old_sha, True)]
        assert a["history"][1]["comment"] == "fine" and a["history"][0]["seq"] < a["history"][1]["seq"]

    path = env.corpus / "microcytosis.md"
    path.write_text(path.read_text().replace("Lead poisoning, which blocks heme synthesis", "Lead poisoning, which inhibits heme synthesis"))
    env.reindex()
    with env.client() as client:
        a = client.get("/api/articles/microcytosis").json()
        assert a["content_sha256"] != old_sha
        assert a["review_status"] == "submitted" and a["review"]["state"] == "approved_version_changed"
        assert a["review"]["label"] == "Approved version changed, pending re-review"
        assert "\n-- Lead poisoning, which blocks heme synthesis [1, 2]." in a["diff_since_approved"]
        assert "+- Lead poisoning, which inhibits heme synthesis [1, 2]." in a["diff_since_approved"]
        hit = client.get("/api/search", params={"q": "lead poisoning heme", "k": 3}).json()["results"][0]
        assert hit["article_id"] == "microcytosis" and hit["caution"] and hit["review"]["note"].startswith("Approved version changed, pending re-review")
        assert_error(decide(client, "microcytosis", "approve", bearer(env, "rev"), content_sha256=old_sha), 409)
        page = client.get("/articles/microcytosis").text
        assert "Declared conflicts: None declared" in page, "the reviewer's conflict-of-interest statement is shown with their decisions"
        assert 'class="del">-- Lead poisoning, which blocks' in page and 'class="add">+- Lead poisoning, which inhibits' in page


def test_the_log_cannot_be_altered_through_any_endpoint(client, env):
    assert decide(client, "microcytosis", "approve", bearer(env, "rev"), comment="ok").status_code == 201
    before = client.get("/api/articles/microcytosis").json()["history"]
    seq = before[0]["seq"]
    methods = {m for route in client.app.routes for m in getattr(route, "methods", set())}
    assert not methods & {"PUT", "PATCH", "DELETE"}, "no route changes or removes anything"
    for url in ("/api/articles/microcytosis/reviews", f"/api/articles/microcytosis/reviews/{seq}", "/api/articles/microcytosis",
                f"/articles/microcytosis/reviews/{seq}", "/articles/microcytosis/reviews"):
        for method in ("put", "patch", "delete"):
            r = client.request(method.upper(), url, headers=bearer(env, "admin"), json={"decision": "request_changes", "comment": "x"})
            assert r.status_code in (404, 405), (method, url, r.status_code)
    r = client.post(f"/api/articles/microcytosis/reviews/{seq}", headers=bearer(env, "admin"), json={"decision": "retire"})
    assert r.status_code in (404, 405)
    assert client.get("/api/articles/microcytosis").json()["history"] == before


# ---------------------------------------------------------------- sign-in, sessions, CSRF


def test_sign_in_sets_a_safe_session_cookie(client):
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/reviews"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("medkb_session="))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert "httponly" in attrs and "samesite=lax" in cookie.lower() and "secure" not in attrs, "plain http on localhost: not Secure"
    page = client.get("/reviews").text
    assert "Signed in as <strong>Dr Rhea Viewer</strong>" in page


def test_the_session_cookie_is_secure_over_https(env):
    with env.client("https://medkb.example.org") as client:
        r = sign_in(client)
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("medkb_session="))
        assert "secure" in {a.strip().lower() for a in cookie.split(";")}
    with env.client("http://medkb.example.org") as client:
        r = sign_in(client)
        assert r.status_code == 400 and "HTTPS" in r.text and "medkb_session=" not in r.headers.get("set-cookie", "")


def test_forms_without_their_csrf_token_are_403(client):
    r = client.post("/signin", data={"name": "rev", "password": PASSWORD})
    assert r.status_code == 403 and "CSRF" in r.text and "medkb_session=" not in r.headers.get("set-cookie", "")
    assert sign_in(client).status_code == 303
    page = client.get("/articles/microcytosis").text
    form = {"content_sha256": sha(client, "microcytosis"), "decision": "approve", "comment": ""}
    r = client.post("/articles/microcytosis/reviews", data=form, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = client.post("/articles/microcytosis/reviews", data={**form, "csrf_token": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/api/articles/microcytosis").json()["history"] == []
    r = client.post("/articles/microcytosis/reviews", data={**form, "csrf_token": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303
    assert [h["decision"] for h in client.get("/api/articles/microcytosis").json()["history"]] == ["approve"]


def test_the_json_api_on_a_session_needs_the_csrf_header(client):
    sign_in(client)
    assert_error(decide(client, "microcytosis", "start_review", {}), 403, "forbidden")
    token = csrf_of(client.get("/articles/microcytosis").text)
    assert decide(client, "microcytosis", "start_review", {"X-CSRF-Token": token}).status_code == 201


def test_sign_out_ends_the_session(client):
    sign_in(client)
    token = csrf_of(client.get("/reviews").text)
    assert client.post("/signout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert "Signed in as" not in client.get("/reviews").text


def test_failed_sign_ins_are_rate_limited_per_account_and_per_address(tmp_path, store_at):
    where = store_at("state")
    env = Env(tmp_path, database_url=where if isinstance(where, str) else None, signin_max_failures=3, signin_max_failures_per_address=5, signin_window=600)
    with env.client() as client:
        for _ in range(3):
            assert sign_in(client, "rev", "wrong password!").status_code == 401
        r = sign_in(client, "rev", PASSWORD)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "Too many failed sign-ins" in r.text
        assert sign_in(client, "ed", "wrong password!").status_code == 401
        assert sign_in(client, "admin", "wrong password!").status_code == 401
        r = sign_in(client, "author", PASSWORD)
        assert r.status_code == 429, "five failures from one address stop every account from it"


# ---------------------------------------------------------------- pages and what's new


def test_queue_lists_what_awaits_review_oldest_first(client, env):
    assert decide(client, "microcytosis", "approve", bearer(env, "rev")).status_code == 201
    html = client.get("/reviews").text
    listed = re.findall(r'class="queue-item" data-article="([^"]+)"', html)
    assert sorted(listed) == ["iron-treatment", "megadose"], "approved articles leave the queue"


def test_queue_is_oldest_first_by_when_the_current_version_was_first_seen(env):
    import datetime as dt

    from indexer.index_store import load_index
    from retrieval.reviews import ReviewStore

    index = load_index(env.root)
    for days_ago, article_id in ((3, "megadose"), (10, "iron-treatment"), (5, "microcytosis")):
        when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
        ReviewStore(env.settings.state_location(env.settings.reviews_path), clock=lambda when=when: when).observe([(article_id, index.articles[article_id].content_sha256)])
    with env.client() as client:
        listed = re.findall(r'class="queue-item" data-article="([^"]+)"', client.get("/reviews").text)
        assert listed == ["iron-treatment", "microcytosis", "megadose"]
        news = re.findall(r'data-article="([^"]+)"', client.get("/new", params={"days": 4}).text)
        assert news == ["megadose"], "what's new looks back N days"


def test_article_page_shows_text_status_history_and_a_form_for_reviewers(client, env):
    anonymous = client.get("/articles/microcytosis").text
    assert "Lead poisoning" in anonymous and 'id="decision-form"' not in anonymous and "Sign in</a> to review" in anonymous
    sign_in(client, "author")
    own = client.get("/articles/microcytosis").text
    assert 'id="decision-form"' in own and 'id="decide-approve"' not in own and "cannot approve it" in own
    sign_in(client, "rev")
    page = client.get("/articles/microcytosis").text
    assert 'id="decide-approve"' in page and 'id="decide-request_changes"' in page and 'id="decide-retire"' not in page
    assert f'name="content_sha256" value="{sha(client, "microcytosis")}"' in page
    r = client.post("/articles/microcytosis/reviews", data={"csrf_token": csrf_of(page), "content_sha256": sha(client, "microcytosis"),
                                                             "decision": "request_changes", "comment": ""})
    assert r.status_code == 422 and "needs a comment" in r.text


def test_whats_new_page_and_atom_feed(client, env):
    assert decide(client, "microcytosis", "approve", bearer(env, "rev")).status_code == 201
    html = client.get("/new").text
    assert 'class="news-item news-approved" data-article="microcytosis"' in html
    r = client.get("/new.atom", params={"days": 7})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = ET.fromstring(r.content)
    titles = [e.findtext("a:title", namespaces=ns) for e in feed.findall("a:entry", ns)]
    assert titles[0] == "Approved: What are the causes of chronic microcytosis?"
    assert "Added: Does megadose iron work?" in titles
    entry = feed.find("a:entry", ns)
    assert entry.findtext("a:id", namespaces=ns) and entry.findtext("a:updated", namespaces=ns)
    assert "Approved by Dr Rhea Viewer (MD, haematology)" in entry.findtext("a:summary", namespaces=ns)
    assert client.get("/new.atom", params={"days": 0}).status_code == 422


ODD_IDS = ["guide/part-2", "dose#adult", "dose?x=1", "iron deficiency", "100%-sure"]


def test_every_article_can_be_reached_and_reviewed_whatever_its_id(tmp_path):
    """An id is text (BEIR imports keep theirs as given): one with '/' was searched and cited
    in answers, yet its review page and API were 404, so nobody could ever approve it; and the
    queue's links cut ids at '#' or '?', leading to another article's page."""
    env = Env(tmp_path)
    for n, article_id in enumerate(ODD_IDS):
        (env.corpus / f"odd-{n}.md").write_text(article(article_id, f"Odd article {n} asks what causes microcytosis?", MICRO_BODY, status="submitted"))
    (env.corpus / "dose.md").write_text(article("dose", "A different article named dose", TREAT_BODY, status="submitted"))
    env.reindex()
    with env.client() as client:
        queue = client.get("/reviews").text
        assert sign_in(client).status_code == 303
        for n, article_id in enumerate(ODD_IDS):
            link = re.search(rf'<a href="([^"]+)" class="article">Odd article {n} asks', queue).group(1)
            page = client.get(link)
            assert page.status_code == 200 and f"Odd article {n} asks" in page.text, (article_id, link)
            assert client.get("/api" + link).json()["id"] == article_id
            action = re.search(r'<form method="post" action="([^"]+)" class="stacked decision"', page.text).group(1)
            assert action == link + "/reviews"  # the decision form posts back to this article
            form = {"csrf_token": csrf_of(page.text), "decision": "start_review", "content_sha256": sha(client, quote(article_id, safe="")), "comment": ""}
            r = client.post(action, data=form, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == link, r.text
            assert client.get("/api" + link).json()["history"][-1]["decision"] == "start_review"
        feed = ET.fromstring(client.get("/new.atom").content)
        links = [e.get("href") for e in feed.iter("{http://www.w3.org/2005/Atom}link") if "/articles/" in (e.get("href") or "")]
        for href in links:
            assert client.get(href.replace("http://localhost", "")).status_code == 200, href


@pytest.mark.parametrize("article_id", [".", "..", "line\nbreak"])
def test_an_id_no_url_can_name_is_an_error_with_its_line(tmp_path, article_id):
    from indexer.articles import ArticleInvalid, parse_article

    path = tmp_path / "odd.md"
    path.write_text(article(json.dumps(article_id), "What causes microcytosis?", MICRO_BODY))
    with pytest.raises(ArticleInvalid) as raised:
        parse_article(path)
    assert any(p.line == 2 and "id" in p.message for p in raised.value.problems), raised.value.problems


@pytest.mark.parametrize("empty", ["review log", "account store"])
def test_the_server_does_not_start_on_an_empty_review_log_or_account_store(tiny_corpus, tmp_path, empty):
    """A 0-byte file where the review log or the accounts should be (a failed copy or restore, a
    `touch`) is not a store: the startup fails naming it, before either store is opened, and the
    file is left as it is. Before, SQLite made an empty store of it: every article showed as never
    reviewed, or nobody could sign in, and the truncated file was overwritten."""
    root = tmp_path / "index"
    build_index([tiny_corpus], root, FakeEmbedder())
    state = tmp_path / "state"
    state.mkdir()
    settings = Settings(index_dir=root, reviews_db=state / "reviews.sqlite", accounts_db=state / "accounts.sqlite",
                        conversations_db=tmp_path / "conversations.sqlite")
    path = settings.reviews_path if empty == "review log" else settings.accounts_path
    path.touch()
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    article = "an" if empty == "account store" else "a"
    with pytest.raises(Exception, match=re.escape(f"{path} is an empty file (0 bytes), not {article} {empty}; it is left as it is")):
        with TestClient(app):
            pass
    assert path.stat().st_size == 0 and [p.name for p in state.iterdir()] == [path.name], "neither store was opened"

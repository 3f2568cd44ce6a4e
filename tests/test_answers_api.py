"""Permalinks, citation export and feedback: an answer is kept as it was given, its references
export as RIS, BibTeX and NLM-style text, and readers' feedback is kept with the permalink and
readable by the corpus's maintainers, all bounded."""

import re

import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.answer_store import AnswerNotFound, AnswerStore, AnswerTooLarge, FeedbackLimit
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from review_helpers import add_users

QUESTION = "causes of chronic microcytosis lead sideroblastic"


def make_app(tiny_corpus, tmp_path, **overrides):
    root = tmp_path / "index"
    if not (root / "current").exists():
        build_index([tiny_corpus], root, FakeEmbedder())
    settings = Settings(index_dir=root, conversations_db=tmp_path / "conversations.sqlite", **overrides)
    return create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))


@pytest.fixture
def client(tiny_corpus, tmp_path):
    with TestClient(make_app(tiny_corpus, tmp_path)) as c:
        yield c


@pytest.fixture
def token(tmp_path):
    store = add_users(tmp_path / "accounts.sqlite")  # the default accounts file: beside the index root
    return store.new_token("rev", "feedback reader")[1]


def ask(client, question=QUESTION, **body):
    r = client.post("/api/ask", json={"question": question, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_every_answer_has_a_permalink_that_shows_it_as_it_was_given(client):
    answer = ask(client)
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", answer["answer_id"]) and answer["permalink"] == f"/answers/{answer['answer_id']}"
    again = client.get(f"/api/answers/{answer['answer_id']}")
    assert again.status_code == 200 and again.headers["content-type"].startswith("application/json")
    stored = again.json()
    assert stored["conversation_id"] is None, "a permalink does not hand out the conversation"
    assert {**stored, "conversation_id": answer["conversation_id"]} == answer
    other = ask(client)
    assert other["answer_id"] != answer["answer_id"]


def test_a_permalink_survives_a_restart_and_does_not_change_with_the_corpus(tiny_corpus, tmp_path):
    with TestClient(make_app(tiny_corpus, tmp_path)) as c:
        answer = ask(c)
    (tiny_corpus / "microcytosis.md").unlink()
    build_index([tiny_corpus], tmp_path / "index", FakeEmbedder())
    with TestClient(make_app(tiny_corpus, tmp_path)) as c:
        stored = c.get(f"/api/answers/{answer['answer_id']}").json()
        assert stored["key_points"] == answer["key_points"] and stored["references"] == answer["references"]
        assert stored["articles"] == answer["articles"], "review statuses as they were at the time"
        page = c.get(answer["permalink"])
    assert page.status_code == 200 and answer["key_points"][0]["text"].split(" [")[0][:40] in page.text


@pytest.mark.parametrize("bad", ["x", "A" * 15, "A" * 17, "A" * 64, "....aaaaaaaaaaaa"])
def test_unknown_or_malformed_ids_are_404_without_echo(client, bad):
    r = client.get(f"/api/answers/{bad}")
    assert r.status_code == 404 and bad not in r.text
    assert client.get(f"/answers/{bad}").status_code == 404
    assert client.get(f"/api/answers/{bad}/references.ris").status_code == 404
    assert client.post(f"/api/answers/{bad}/feedback", json={"helpful": True}).status_code == 404
    assert client.get("/api/answers/" + "A" * 65).status_code == 422


def test_acknowledgements_get_no_permalink(client):
    first = ask(client, "What is iron deficiency?")
    thanks = ask(client, "thanks", conversation_id=first["conversation_id"])
    assert thanks["turn"] == "acknowledgement" and thanks["answer_id"] is None and thanks["permalink"] is None


def test_reference_export_in_three_formats(client):
    answer = ask(client)
    base = f"/api/answers/{answer['answer_id']}/references"
    ris = client.get(base + ".ris")
    assert ris.status_code == 200 and ris.headers["content-type"].startswith("application/x-research-info-systems")
    assert "attachment" in ris.headers["content-disposition"]
    records = [r for r in ris.text.split("ER  - ") if r.strip()]
    assert len(records) == len(answer["references"]) + 1, "one per reference, and one for the answer"
    assert all(re.search(r"^TY  - \w+\r$", r, re.M) and "TI  - " in r for r in records)
    assert "AN  - PMID:12345" in ris.text and "UR  - https://pubmed.ncbi.nlm.nih.gov/12345/" in ris.text
    bib = client.get(base + ".bib")
    assert bib.status_code == 200 and bib.headers["content-type"].startswith("application/x-bibtex")
    assert bib.text.count("@") == len(answer["references"]) + 1 and "pmid = {12345}" in bib.text and "title = {A review}" in bib.text
    txt = client.get(base + ".txt")
    assert txt.status_code == 200 and txt.headers["content-type"].startswith("text/plain")
    for ref in answer["references"]:
        assert re.search(rf"^{ref['number']}\. .*{re.escape(ref['title'])}", txt.text, re.M)
    assert "PMID: 12345." in txt.text and f"(http://testserver{answer['permalink']})" in txt.text
    assert client.get(base + ".pdf").status_code == 422


def test_the_text_export_gives_the_permalink_as_an_absolute_url(tiny_corpus, tmp_path):
    """A reader pasting the references into a note needs a link that works from there: the scheme,
    host and root path the server was reached by (here behind a proxy that mounts it at /kb)."""
    with TestClient(make_app(tiny_corpus, tmp_path), base_url="https://medkb.example.org", root_path="/kb") as c:
        answer = ask(c)
        first = c.get(f"/api/answers/{answer['answer_id']}/references.txt").text.splitlines()[0]
    assert first.endswith(f"(https://medkb.example.org/kb/answers/{answer['answer_id']})"), first


def test_every_export_names_the_same_absolute_permalink(tiny_corpus, tmp_path):
    """A reference manager keeps where the references came from: RIS and BibTeX each hold one record
    for the answer, a web page whose URL is the permalink the text export is headed by; each
    reference keeps its own publication's URL."""
    with TestClient(make_app(tiny_corpus, tmp_path), base_url="https://medkb.example.org", root_path="/kb") as c:
        answer = ask(c)
        base = f"/api/answers/{answer['answer_id']}/references"
        txt, ris, bib = (c.get(base + ext).text for ext in (".txt", ".ris", ".bib"))
    permalink = re.search(r"\((https://[^)]+)\)$", txt.splitlines()[0]).group(1)
    assert permalink == f"https://medkb.example.org/kb/answers/{answer['answer_id']}"
    records = [r.strip("\r\n") for r in ris.split("ER  - ") if r.strip()]
    named = [r for r in records if f"UR  - {permalink}\r" in r]
    assert len(named) == 1 and named[0].startswith("TY  - ELEC\r") and "TI  - medkb answer to \u201c" in named[0], records
    assert "UR  - https://pubmed.ncbi.nlm.nih.gov/12345/" in ris, "the references keep their own URLs"
    entries = bib.split("\n@")
    named = [e for e in entries if any(line.rstrip(",") == f"  url = {{{permalink}}}" for line in e.splitlines())]
    assert len(named) == 1 and named[0].startswith(f"misc{{medkb-answer-{answer['answer_id']},"), entries
    assert all(e.count("  url = {") <= 1 for e in entries), "a BibTeX entry holds one url"


def test_export_carries_retraction_and_escapes():
    from server.citation_export import bibtex, nlm, ris

    ref = {"number": 1, "kind": "research", "title": "Iron {and} 100% of $x_1$\nnext", "source": "J & K", "year": 2020, "authors": [f"Author{i} A" for i in range(8)],
           "identifiers": {"pmid": "1", "doi": "10.1/x", "url": None}, "notices": [{"type": "retracted", "pmid": "2", "citation": "Retraction of X", "note": None}],
           "retracted": True, "article_id": "a", "article_title": "A", "original_number": 3}
    unresolved = {"number": 2, "unresolved": True, "article_id": "a", "article_title": "A", "original_number": 9, "identifiers": {}}
    r = ris([ref, unresolved], "ID")
    assert r.count("TY  - ") == 1 and "N1  - RETRACTED" in r and "\nnext" not in r and "TI  - Iron {and} 100% of $x_1$ next" in r
    b = bibtex([ref, unresolved], "ID")
    assert r"Iron \{and\} 100\% of \$x\_1\$ next" in b and r"J \& K" in b and "RETRACTED" in b and b.count("@article") == 1
    t = nlm([ref, unresolved], "ID", "q", "/answers/ID")
    assert "Author5 A, et al." in t and "[Retracted]" in t and "Retracted: Retraction of X; PMID 2." in t
    assert "2. The source article \u201cA\u201d lists no reference for [9]." in t


def test_bibtex_keeps_urls_and_dois_verbatim():
    """BibTeX and biblatex read url (and biblatex doi) verbatim: a TeX escape ends up in the link
    (`guide\\_v2.pdf`, `iron\\%20deficiency`), so none is added; only a brace or backslash, which
    would unbalance the field, is percent-encoded. The title is still escaped as TeX."""
    from server.citation_export import bibtex

    url = "https://example.org/~lab/guide_v2.pdf?q=iron%20deficiency&lang=en#sec_2"
    doi = "10.5555/(SICI)1234-5678(19980715)17:13<1457::AID-TEST_1>3.0.CO;2-K"  # test input in a SICI-style shape, not a reference
    refs = [{"number": 1, "kind": "guideline", "title": "Guide_v2 at 100%", "source": "A society", "year": 2021, "identifiers": {"url": url}},
            {"number": 2, "kind": "research", "title": "A trial", "source": "A journal", "year": 1998, "identifiers": {"doi": doi, "pmid": "12345"}},
            {"number": 3, "kind": "guideline", "title": "Braces", "identifiers": {"url": "https://example.org/a{b}/c\\d_e}"}}]
    b = bibtex(refs, "ID", "q", "https://medkb.example.org/answers/ID_1")
    lines = b.splitlines()
    assert f"  url = {{{url}}}," in lines, b
    assert f"  doi = {{{doi}}}," in lines, b
    assert "  url = {https://pubmed.ncbi.nlm.nih.gov/12345/}," in lines, b
    assert "  url = {https://example.org/a%7Bb%7D/c%5Cd_e%7D}," in lines, b
    assert "  url = {https://medkb.example.org/answers/ID_1}," in lines, b
    assert r"  title = {Guide\_v2 at 100\%}," in lines, b
    for entry in b.split("\n@")[1:]:
        depth = 0
        for c in entry:
            depth += {"{": 1, "}": -1}.get(c, 0)
            assert depth >= 0, entry
        assert depth == 0, entry


def test_feedback_is_kept_with_the_permalink_and_read_by_maintainers(client, token):
    answer = ask(client)
    r = client.post(f"/api/answers/{answer['answer_id']}/feedback", json={"helpful": False, "comment": "  Missed the dose.  "})
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["helpful"] is False and entry["comment"] == "Missed the dose." and entry["permalink"] == answer["permalink"]
    assert entry["question"] == QUESTION and entry["resolved_query"] == answer["resolved_query"]
    client.post(f"/api/answers/{answer['answer_id']}/feedback", json={"helpful": True})
    assert client.get("/api/feedback").status_code == 401, "maintainers only"
    page = client.get("/api/feedback", params={"limit": 1}, headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == 2 and body["limit"] == 1 and body["next_offset"] == 1
    assert body["items"][0]["helpful"] is True and body["items"][0]["comment"] is None, "newest first"
    last = client.get("/api/feedback", params={"limit": 1, "offset": 1}, headers={"Authorization": f"Bearer {token}"}).json()
    assert last["next_offset"] is None and last["items"][0]["comment"] == "Missed the dose."
    assert client.get("/api/feedback", params={"limit": 101}, headers={"Authorization": f"Bearer {token}"}).status_code == 422


def test_feedback_is_bounded(tiny_corpus, tmp_path):
    with TestClient(make_app(tiny_corpus, tmp_path, feedback_comment_chars=20, feedback_per_answer=2)) as c:
        answer = ask(c)
        url = f"/api/answers/{answer['answer_id']}/feedback"
        long = c.post(url, json={"helpful": True, "comment": "x" * 21})
        assert long.status_code == 422 and long.json()["error"]["details"][0]["location"] == "body.comment"
        assert c.post(url, json={"helpful": True, "comment": "x" * 20000}).status_code == 422
        assert c.post(url, json={"helpful": True, "extra": 1}).status_code == 422
        assert c.post(url, json={"helpful": "maybe"}).status_code == 422
        assert [c.post(url, json={"helpful": True}).status_code for _ in range(3)] == [201, 201, 429]
        schema = c.get("/openapi.json").json()["components"]["schemas"]["FeedbackIn"]["properties"]["comment"]
        assert any(b.get("maxLength") == 20 for b in [schema, *schema.get("anyOf", [])])


def test_the_store_is_bounded(store_at):
    clock = iter(range(1000)).__next__
    store = AnswerStore(store_at("a.sqlite"), max_answers=3, max_answer_bytes=100, max_feedback=2, max_feedback_per_answer=5, clock=lambda: clock())
    for i in range(5):
        store.put(f"id{i}", "q", "{}")
    assert store.count() == 3
    with pytest.raises(AnswerNotFound):
        store.get("id0")
    assert store.get("id4").body == "{}"
    with pytest.raises(AnswerTooLarge):
        store.put("big", "q", "x" * 101)
    for i in range(3):
        store.add_feedback("id4", i % 2 == 0, f"c{i}", "q", "r")
    items, total = store.feedback()
    assert total == 2 and [f.comment for f in items] == ["c2", "c1"], "the oldest feedback goes first"
    limited = AnswerStore(store_at("b.sqlite"), max_feedback_per_answer=1)
    limited.put("one", "q", "{}")
    limited.add_feedback("one", True, None, "q", "r")
    with pytest.raises(FeedbackLimit):
        limited.add_feedback("one", True, None, "q", "r")


def test_an_unusable_store_leaves_answers_without_permalinks(tiny_corpus, tmp_path):
    bad = tmp_path / "answers.sqlite"
    bad.write_bytes(b"not a database" * 1000)
    with TestClient(make_app(tiny_corpus, tmp_path, answers_db=bad)) as c:
        answer = ask(c)
        assert answer["key_points"] and answer["answer_id"] is None and "Permalinks are unavailable" in answer["notice"]
        assert c.get("/api/answers/" + "A" * 16).status_code == 503


def test_too_large_an_answer_is_not_kept(tiny_corpus, tmp_path):
    with TestClient(make_app(tiny_corpus, tmp_path, max_answer_bytes=1000)) as c:
        answer = ask(c)
        assert answer["answer_id"] is None and "too large to keep" in answer["notice"]


def test_the_server_does_not_start_on_an_empty_answer_store_and_leaves_it(tiny_corpus, tmp_path):
    """A 0-byte file where the answer store should be (a failed copy or restore, a `touch`) is not a
    store: the startup fails naming it, as for the review log and the accounts, and the file is left
    as it is. Before, SQLite made an empty store of it: every permalink given before was a 404."""
    empty = tmp_path / "answers.sqlite"  # the default: beside the index root
    empty.touch()
    with pytest.raises(Exception, match=re.escape(f"{empty} is an empty file (0 bytes), not an answer store; it is left as it is")):
        with TestClient(make_app(tiny_corpus, tmp_path)):
            pass
    assert empty.stat().st_size == 0 and not list(tmp_path.glob("answers.sqlite-*"))
    empty.unlink()  # removed, as the message says: a new store
    with TestClient(make_app(tiny_corpus, tmp_path)) as c:
        assert ask(c)["answer_id"] and empty.stat().st_size > 0

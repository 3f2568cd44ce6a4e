"""The caution line over an answer says what is not approved: nothing for an answer that shows
nothing or only approved articles' text, the full caution when none of it is approved, and for
a mixed answer how many of its articles and key points are pending (not that all of it is).
An answer that shows nothing (its filters admit no passage) says so, with no coverage line."""

import re

from fastapi.testclient import TestClient

from indexer.index_store import load_index
from indexer.vocabulary import CAUTION
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from review_helpers import record

QUESTION = "causes of chronic microcytosis"


def ask(default_corpus_index, tmp_path, approved: list[str], body: dict) -> dict:
    """POST /api/ask on the default corpus after approving `approved` (their current content)."""
    record(tmp_path / "reviews.sqlite", load_index(default_corpus_index), {a: "approve" for a in approved})
    settings = Settings(index_dir=default_corpus_index, conversations_db=tmp_path / "c.sqlite", reviews_db=tmp_path / "reviews.sqlite",
                        accounts_db=tmp_path / "a.sqlite", answers_db=tmp_path / "answers.sqlite")
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as c:
        r = c.post("/api/ask", json=body)
        assert r.status_code == 200
        return r.json()


def shown_articles(answer: dict) -> list[str]:
    return list(dict.fromkeys(p["article_id"] for g in answer["groups"] for p in g["passages"]))


def test_none_approved_gets_the_full_caution(default_corpus_index, tmp_path):
    answer = ask(default_corpus_index, tmp_path, [], {"question": QUESTION})
    assert shown_articles(answer) and answer["caution"] == CAUTION


def test_a_mixed_answer_says_how_much_is_pending(default_corpus_index, tmp_path):
    first = ask(default_corpus_index, tmp_path / "probe", [], {"question": QUESTION})
    lead = first["key_points"][0]["article_id"]
    answer = ask(default_corpus_index, tmp_path, [lead], {"question": QUESTION})
    shown = shown_articles(answer)
    status = {a["id"]: a["review_status"] for a in answer["articles"]}
    pending = [a for a in shown if status[a] != "approved"]
    assert status[lead] == "approved" and 0 < len(pending) < len(shown), "the question draws on an approved and a pending article"
    caution = answer["caution"]
    assert caution != CAUTION, "a mixed answer is not all unapproved"
    m = re.match(r"Partly pending clinical review: (\d+) of the (\d+) articles this answer draws on (?:is|are) not approved by a clinician"
                 r"(?:; (\d+|none) of its (?:(\d+) )?key points? comes? from them)?\. Verify", caution)
    assert m, caution
    assert (int(m[1]), int(m[2])) == (len(pending), len(shown))
    from_pending = sum(1 for p in answer["key_points"] if p["article_id"] in pending)
    assert (0 if m[3] == "none" else int(m[3])) == from_pending
    if m[4]:
        assert int(m[4]) == len(answer["key_points"])
    assert answer["coverage"]["approved"] == sum(1 for a in answer["articles"] if a["review_status"] == "approved")


def test_everything_approved_has_no_caution(default_corpus_index, tmp_path):
    first = ask(default_corpus_index, tmp_path / "probe", [], {"question": QUESTION})
    answer = ask(default_corpus_index, tmp_path, shown_articles(first), {"question": QUESTION})
    assert shown_articles(answer) == shown_articles(first) and answer["caution"] is None


def test_an_answer_that_shows_nothing_has_no_caution_or_coverage_and_says_why(default_corpus_index, tmp_path):
    answer = ask(default_corpus_index, tmp_path, [], {"question": QUESTION, "filters": {"updated_since": "2100-01-01"}})
    assert not shown_articles(answer) and not answer["key_points"] and not answer["references"]
    assert answer["caution"] is None and answer["coverage"] is None and answer["aspect_note"] is None
    assert answer["no_match"] == "No passage matches this question with the filters chosen; try it without them."
    for body in ({"question": "thanks"}, {"question": "what is it?"}):
        empty = ask(default_corpus_index, tmp_path, [], body)
        assert not shown_articles(empty) and empty["caution"] is None and empty["coverage"] is None


def test_only_approved_passages_after_a_filter_have_no_caution(default_corpus_index, tmp_path):
    first = ask(default_corpus_index, tmp_path / "probe", [], {"question": QUESTION})
    lead = first["key_points"][0]["article_id"]
    answer = ask(default_corpus_index, tmp_path, [lead], {"question": QUESTION, "filters": {"review_status": ["approved"]}})
    assert shown_articles(answer) == [lead] and answer["caution"] is None


def test_the_search_page_caution_for_mixed_and_pending_results(default_corpus_index, tmp_path):
    import html as html_lib

    def page(approved: list[str], folder: str) -> str:
        log = tmp_path / folder / "reviews.sqlite"
        log.parent.mkdir()
        record(log, load_index(default_corpus_index), {a: "approve" for a in approved})
        settings = Settings(index_dir=default_corpus_index, conversations_db=tmp_path / folder / "c.sqlite", reviews_db=log,
                            accounts_db=tmp_path / folder / "a.sqlite", answers_db=tmp_path / folder / "answers.sqlite")
        app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
        with TestClient(app) as c:
            return html_lib.unescape(c.get("/", params={"q": QUESTION, "k": 8}).text)

    pending = page([], "none")
    assert f'id="caution">{CAUTION}<' in pending
    articles = list(dict.fromkeys(re.findall(r'class="passage" id="r\d+" data-article="([^"]+)"', pending)))
    mixed = page(articles[:1], "mixed")
    shown = re.findall(r'class="passage" id="r\d+" data-article="([^"]+)"', mixed)
    m = re.search(r'id="caution">Partly pending clinical review: (\d+) of the (\d+) passages below come from articles not approved', mixed)
    assert m and (int(m[1]), int(m[2])) == (sum(a != articles[0] for a in shown), len(shown)), mixed[:2000]
    assert 'id="caution"' not in page(articles, "all")

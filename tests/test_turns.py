"""Each turn is classified before it is resolved: acknowledgements are not searched, a question
naming its own subject is searched as typed, back-references and elliptic follow-ups take the
topic, and a question with no subject and nothing to take one from is not answered. Cases 11,
12 and 13 through POST /api/ask over the default corpus (fake embedder)."""

import json
import re

import pytest
from fastapi.testclient import TestClient

from indexer.citations import find_citations
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.followups import read_conversation, read_turn
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from paths import CASES

TOPIC = "chronic microcytosis"
TREATMENT = re.compile(r"\b(?:treat|manag|therap|transfus|chelat|phlebotom|venesect|pyridoxine|iron replacement|oral iron|intravenous iron|"
                       r"ferrous|tablet|parenteral|replac|erythropoietin)", re.I)


@pytest.mark.parametrize("text", ["thanks", "Thanks!", "thank you!", "ok", "OK.", "great", "great, thanks", "got it", "perfect, thank you very much",
                                  "that's all, thanks", "cheers", "bye"])
def test_acknowledgements_are_not_searched_and_leave_the_topic(text):
    reading = read_turn(text, TOPIC)
    assert reading.kind == "acknowledgement" and reading.searched is None and reading.topic == TOPIC


@pytest.mark.parametrize("text,searched", [
    ("how is it treated?", "how is chronic microcytosis treated?"),
    ("is this condition inherited?", "is chronic microcytosis inherited?"),
    ("what causes this?", "what causes chronic microcytosis?"),
    ("is it common in children?", "is chronic microcytosis common in children?"),
    ("and in children?", "and in children (chronic microcytosis)"),
    ("what about the dose?", "what about the dose (chronic microcytosis)"),
    ("what are the symptoms?", "what are the symptoms (chronic microcytosis)"),
    ("how long does treatment last?", "how long does treatment last (chronic microcytosis)"),
    ("what about pregnancy?", "what about pregnancy (chronic microcytosis)"),
    ("thanks! and how is it treated?", "and how is chronic microcytosis treated?"),
])
def test_back_references_and_elliptic_follow_ups_take_the_topic(text, searched):
    reading = read_turn(text, TOPIC)
    assert (reading.kind, reading.searched, reading.topic) == ("follow_up", searched, TOPIC)


@pytest.mark.parametrize("text,topic", [
    ("what about IV lidocaine for pain?", "IV lidocaine for pain"),
    ("is it safe to give IV iron in pregnancy?", "IV iron in pregnancy"),  # a dummy 'it'
    ("is it true that ferritin is low in inflammation?", "ferritin is low in inflammation"),
    ("what is ferritin and what does it measure?", "ferritin"),  # 'it' is ferritin, named before it
    ("what dose of IV iron should be used for heavy periods?", "IV iron should be used for heavy periods"),
    ("what about gout?", "gout"),
    ("sideroblastic anemia?", "sideroblastic anemia"),
])
def test_a_question_naming_its_own_subject_is_searched_as_typed(text, topic):
    reading = read_turn(text, TOPIC)
    assert (reading.kind, reading.searched, reading.topic) == ("question", text, topic)


def test_a_question_naming_the_topic_keeps_it():
    reading = read_turn("is chronic microcytosis inherited?", TOPIC)
    assert (reading.kind, reading.searched, reading.topic) == ("question", "is chronic microcytosis inherited?", TOPIC)


@pytest.mark.parametrize("text", ["what is it?", "how is it treated?", "the", "what are the symptoms?", "and in children?", "what about the dose?"])
def test_without_a_topic_a_question_with_no_subject_is_not_searched(text):
    reading = read_turn(text, None)
    assert reading.kind == "no_subject" and reading.searched is None and reading.topic is None


@pytest.mark.parametrize("text", ["pregnancy", "what is ferritin?", "asdfgh qwerty"])
def test_without_a_topic_a_subject_is_a_question(text):
    assert read_turn(text, None).kind == "question"


def test_the_topic_never_nests():
    turns = ["causes of chronic microcytosis", "how is it treated?", "thanks", "and in children?", "what about the dose?", "is it inherited?"]
    readings = read_conversation(turns)
    assert [r.kind for r in readings] == ["question", "follow_up", "acknowledgement", "follow_up", "follow_up", "follow_up"]
    assert {r.topic for r in readings} == {TOPIC}
    for r in readings:
        assert r.searched is None or r.searched.lower().count("microcytosis") == 1, r.searched


def test_a_topic_switch_then_a_follow_up_takes_the_new_topic():
    readings = read_conversation(["causes of chronic microcytosis", "what about IV lidocaine for pain?", "how is it given?"])
    assert readings[1].topic == "IV lidocaine for pain"
    assert readings[2].searched == "how is IV lidocaine for pain given?"


# ---------------------------------------------------------------- cases 11, 12, 13 through the API


@pytest.fixture
def client(default_corpus_index, tmp_path):
    settings = Settings(index_dir=default_corpus_index, conversations_db=tmp_path / "c.sqlite", reviews_db=tmp_path / "r.sqlite",
                        accounts_db=tmp_path / "a.sqlite", answers_db=tmp_path / "answers.sqlite")
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as c:
        yield c


def converse(client, turns: list[str]) -> list[dict]:
    answers, conversation = [], None
    for turn in turns:
        r = client.post("/api/ask", json={"question": turn, **({"conversation_id": conversation} if conversation else {})})
        assert r.status_code == 200, r.text
        answers.append(r.json())
        conversation = answers[-1]["conversation_id"]
        assert conversation
    return answers


def case_turns(folder: str) -> list[str]:
    path = CASES / folder / "conversation.json"
    if not path.exists():
        pytest.skip(f"case not found at {path} (shared/ must sit beside the repository)")
    return json.loads(path.read_text())["turns"]


def assert_cited(point: dict) -> None:
    numbers = sorted({n for span in find_citations(point["text"]) for n in span.numbers})
    assert numbers and numbers == sorted(point["citations"]), point


def test_case_11_a_follow_up_naming_its_own_subject_is_searched_as_typed(client):
    turns = case_turns("11-topic-switch")
    first, second = converse(client, turns)
    assert first["turn"] == "question"
    assert second["turn"] == "question" and second["resolved_query"] == turns[1], second["resolved_query"]
    assert "DOAC" not in second["resolved_query"] and second["topic"] == "IV lidocaine for pain"
    shown = [p["article_id"] for g in second["groups"] for p in g["passages"]]
    assert "intravenous-lidocaine-infusion" in shown


def test_case_12_thanks_is_not_searched_and_the_next_follow_up_resolves_against_the_topic(client):
    turns = case_turns("12-thanks")
    first, thanks, treated = converse(client, turns)
    assert first["topic"] == TOPIC
    assert thanks["turn"] == "acknowledgement" and thanks["reply"]
    assert not thanks["key_points"] and not any(g["passages"] for g in thanks["groups"]) and not thanks["references"]
    assert thanks["resolved_query"] == "" and thanks["topic"] == TOPIC and thanks["coverage"] is None
    assert treated["turn"] == "follow_up" and treated["resolved_query"] == "how is chronic microcytosis treated?"
    assert "thanks" not in treated["resolved_query"].lower()
    points = treated["key_points"]
    assert len(points) >= 3
    for point in points:
        assert_cited(point)
        assert TREATMENT.search(point["text"]) or "Management and Treatment" in point["section_path"], point["text"]
    assert points[0]["article_id"] == "chronic-microcytosis-evaluation-treatment"


def test_case_13_a_question_with_no_subject_and_no_history_is_not_answered(client):
    (answer,) = converse(client, case_turns("13-no-content"))
    assert answer["turn"] == "no_subject"
    assert answer["key_points"] == [] and not any(g["passages"] for g in answer["groups"]) and answer["references"] == []
    assert "does not say what it is about" in answer["no_match"]
    assert answer["caution"] is None and answer["coverage"] is None


def test_case_13_content_free_query_is_not_answered(client):
    (answer,) = converse(client, ["the"])
    assert answer["turn"] == "no_subject" and answer["key_points"] == [] and answer["no_match"]


def test_explicit_history_is_read_turn_by_turn(client):
    r = client.post("/api/ask", json={"question": "how is it treated?", "history": ["what are the causes of chronic microcytosis?", "thanks"]})
    assert r.status_code == 200 and r.json()["resolved_query"] == "how is chronic microcytosis treated?"


def test_the_topic_is_stored_per_turn(client):
    answers = converse(client, ["causes of chronic microcytosis", "ok", "what about IV lidocaine for pain?", "great", "how is it given?"])
    assert [a["turn"] for a in answers] == ["question", "acknowledgement", "question", "acknowledgement", "follow_up"]
    assert answers[-1]["resolved_query"] == "how is IV lidocaine for pain given?"
    history = client.app.state.conversations.history(answers[-1]["conversation_id"])
    assert [t.kind for t in history] == [a["turn"] for a in answers]
    assert [t.topic for t in history] == [TOPIC, TOPIC, "IV lidocaine for pain", "IV lidocaine for pain", "IV lidocaine for pain"]
    assert [t.resolved for t in history][1] == "", "an acknowledgement is not searched"


# ---------------------------------------------------------------- the aspect steers the answer


def test_nothing_on_the_aspect_of_the_topic_is_said_so(client):
    answer = client.post("/api/ask", json={"question": "how is chronic microcytosis prevented?"}).json()
    assert answer["aspect"] == "prevention" and answer["topic"] == TOPIC
    assert answer["aspect_note"] == "No passage on the prevention of chronic microcytosis; the nearest passages are shown."
    assert answer["key_points"] == [], "the topic's other passages are not presented as the answer"
    assert any(g["passages"] for g in answer["groups"]), "the nearest passages are shown as such"


def test_the_aspect_steers_within_the_topics_articles_first(client):
    first, treated = converse(client, ["causes of chronic microcytosis", "how is it treated?"])
    assert first["aspect"] == "cause" and treated["aspect"] == "treatment" and treated["aspect_note"] is None
    top = [p for g in treated["groups"] for p in g["passages"] if p["rank"] == 1][0]
    assert top["article_id"] == "chronic-microcytosis-evaluation-treatment"
    assert not any(re.search(r"\bcaus", p["text"], re.I) and not TREATMENT.search(p["text"]) for p in treated["key_points"])


def test_the_coverage_line(client):
    answer = client.post("/api/ask", json={"question": "how is chronic microcytosis treated?"}).json()
    coverage = answer["coverage"]
    assert coverage["articles"] == len(answer["articles"]) and coverage["approved"] == 0
    assert coverage["latest_update"] == max(a["last_updated"] for a in answer["articles"] if a["last_updated"])
    assert coverage["retracted_sources"] == 0
    assert coverage["summary"].startswith(f"Draws on {coverage['articles']} articles, 0 approved; most recent update {coverage['latest_update']}")
    assert coverage["summary"].endswith("no cited source is retracted.")


def test_a_search_that_finds_nothing_is_shown_as_no_match(default_corpus_index, tmp_path):
    """The retrieval side decides that nothing matches (SearchResult.no_match, .suggestions); the answer then
    has no key points and no passages, and carries the message and the suggestions."""

    class NoMatchService(SearchService):
        def search(self, query, k=10, filters=None, settings=None):
            result = super().search(query, k, filters) if filters is not None else super().search(query, k)
            if "qwerty" in query:
                result.hits = []
                result.no_match = "Nothing in the knowledge base matches this question."
                result.suggestions = ["What are the causes of chronic microcytic anemia?"]
            return result

    settings = Settings(index_dir=default_corpus_index, conversations_db=tmp_path / "c.sqlite", reviews_db=tmp_path / "r.sqlite",
                        accounts_db=tmp_path / "a.sqlite", answers_db=tmp_path / "answers.sqlite")
    app = create_app(settings, service_factory=lambda s: NoMatchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as c:
        answer = c.post("/api/ask", json={"question": "asdfgh qwerty"}).json()
    assert answer["no_match"] == "Nothing in the knowledge base matches this question."
    assert answer["key_points"] == [] and not any(g["passages"] for g in answer["groups"]) and answer["references"] == []
    assert answer["related_questions"] == ["What are the causes of chronic microcytic anemia?"] and answer["caution"] is None
    assert answer["coverage"] is None
    assert answer["answer_id"], "a no-match answer has a permalink, so a reader can say it did not help"

"""The aspect of a question steers its key points: treatment questions get treatment sentences."""

import pytest

from retrieval.aspects import aspect_of, aspects_in


@pytest.mark.parametrize("question,aspect", [
    ("how is chronic microcytosis treated?", "treatment"),
    ("causes of chronic microcytosis", "cause"),
    ("how is iron deficiency anaemia diagnosed?", "diagnosis"),
    ("what dose of oral iron for adults?", "dose"),
    ("how can iron deficiency in infants be prevented?", "prevention"),
    ("what are the symptoms of thalassemia?", "symptoms"),
    ("what is the outlook for sideroblastic anemia?", "prognosis"),
    ("what does a low ferritin mean?", "interpretation"),
    ("chronic microcytosis", None),
    ("tests to diagnose and treat microcytosis", None),  # two aspects: none preferred
])
def test_aspect_of_a_question(question, aspect):
    assert aspect_of(question) == aspect


def test_a_sentence_can_speak_of_several_aspects():
    assert aspects_in("Chronic microcytosis is treated according to its cause.") == {"treatment", "cause"}
    assert aspects_in("Ferritin is an iron storage protein.") == set()


def test_key_points_follow_the_aspect_asked(tmp_path):
    from fastapi.testclient import TestClient

    from indexer.build import build_index
    from indexer.index_store import load_index
    from medkb.settings import Settings
    from retrieval.search import SearchService
    from server.app import create_app

    from fakes import FakeEmbedder
    from sample_articles import article

    body = """
## From the Guidelines

The causes of chronic microcytosis are iron deficiency, thalassaemia trait and chronic disease [1].
The rarer causes of chronic microcytosis include sideroblastic anaemia and lead poisoning [1].
Chronic microcytosis from iron deficiency is treated with oral iron once daily or on alternate days [1].
Transfusion is reserved for chronic microcytosis with severe symptomatic anaemia [1].
Thalassaemia trait needs no treatment beyond genetic counselling [1].

## From the Research

Chronic microcytosis is common in women of reproductive age [2].
"""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "m.md").write_text(article("micro", "What about chronic microcytosis?", body))
    build_index([corpus], tmp_path / "index", FakeEmbedder())
    app = create_app(Settings(index_dir=tmp_path / "index", conversations_db=tmp_path / "c.sqlite"),
                     service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as client:
        treated = [p["text"] for p in client.post("/api/ask", json={"question": "how is chronic microcytosis treated?"}).json()["key_points"]]
        caused = [p["text"] for p in client.post("/api/ask", json={"question": "causes of chronic microcytosis"}).json()["key_points"]]
    assert treated and all("causes" not in t for t in treated), treated
    assert any("oral iron" in t for t in treated)
    # Only two sentences speak of causes, so others may follow them, but never before them.
    assert [t.split()[1] for t in caused[:2]] == ["causes", "rarer"], caused

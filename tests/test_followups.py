import pytest

from retrieval.followups import resolve, topic_of


@pytest.mark.parametrize("question,topic", [
    ("What are the causes of chronic microcytic anemia?", "chronic microcytic anemia"),
    ("causes of chronic microcytosis", "chronic microcytosis"),
    ("What is (are) Adult Acute Lymphoblastic Leukemia ?", "Adult Acute Lymphoblastic Leukemia"),
    ("Who is at risk for Parkinson's Disease?", "Parkinson's Disease"),
    ("What are the genetic changes related to alpha thalassemia ?", "alpha thalassemia"),
    ("How is iron deficiency anemia treated?", "iron deficiency anemia"),
    ("How to prevent Gout ?", "Gout"),
])
def test_topic_of(question, topic):
    assert topic_of(question) == topic


@pytest.mark.parametrize("follow_up,resolved", [
    ("how is it treated?", "how is chronic microcytosis treated?"),
    ("Who is at risk for this condition?", "Who is at risk for chronic microcytosis?"),
    ("and in pregnancy?", "and in pregnancy (chronic microcytosis)"),
    ("what dose of IV iron should be used for heavy periods?", "what dose of IV iron should be used for heavy periods?"),
    ("is chronic microcytosis inherited?", "is chronic microcytosis inherited?"),
])
def test_resolve_uses_the_last_question(follow_up, resolved):
    assert resolve(follow_up, ["causes of chronic microcytosis"]) == resolved


def test_without_history_the_question_stands():
    assert resolve("how is it treated?", []) == "how is it treated?"


def test_topic_carries_through_a_chain_of_follow_ups():
    first = "What is hereditary hemochromatosis?"
    second = resolve("how is it diagnosed?", [first])
    assert second == "how is hereditary hemochromatosis diagnosed?"
    assert resolve("what about treatment?", [first, second]) == "what about treatment (hereditary hemochromatosis)"


def test_resolve_history_resolves_turn_by_turn():
    from retrieval.followups import resolve_history

    assert resolve_history(["What is hereditary hemochromatosis?", "how is it diagnosed?"]) == [
        "What is hereditary hemochromatosis?", "how is hereditary hemochromatosis diagnosed?"]

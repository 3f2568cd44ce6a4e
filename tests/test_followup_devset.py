"""The harder follow-up dev set (medquad-followup-aspects): generic follow-ups asking another
aspect of the same focus, judged against that aspect's answer, with acknowledgements and
topic switches mixed in; and how evals.followup_aspects reads each context mode."""

import json
import random
from collections import Counter

from evals.datasets import load_beir
from evals.followup_aspects import conversation_turn
from evals.medquad_devsets import ACKNOWLEDGEMENTS, ASPECT_FOLLOW_UPS, aspect_conversations
from retrieval.aspects import aspect_of
from retrieval.followups import read_conversation, read_turn


def pair(article: str, n: int, focus: str, question: str, qtype: str, text: str | None = None) -> dict:
    return {"doc_id": f"{article}-q{n}", "article": article, "focus": focus, "title": focus, "question": question, "qid": f"{article}-{n}",
            "qtype": qtype, "text": text or f"{focus} {qtype} answer {n}", "answer_key": f"{article}-{n}"}


def sample_pairs() -> list[dict]:
    pairs = []
    for i, focus in enumerate(["Gout", "Alpha thalassemia", "Fabry disease", "Adult Acute Lymphoblastic Leukemia"]):
        a = f"doc{i}"
        pairs += [pair(a, 1, focus, f"What is (are) {focus} ?", "information"),
                  pair(a, 2, focus, f"What are the treatments for {focus} ?", "treatment"),
                  pair(a, 3, focus, f"What are the symptoms of {focus} ?", "symptoms"),
                  pair(a, 4, focus, f"How to diagnose {focus} ?", "exams and tests"),
                  pair(a, 5, focus, f"Is {focus} inherited ?", "inheritance")]
    return pairs


def test_follow_ups_ask_another_aspect_in_generic_words():
    pairs = sample_pairs()
    same = {p["answer_key"]: [p["doc_id"]] for p in pairs}
    queries = aspect_conversations(pairs, same, 100, random.Random(1))
    assert len(queries) == 12, "treatment, symptoms and tests of each of four focuses (inheritance is not an aspect asked)"
    by_doc = {p["doc_id"]: p for p in pairs}
    mixes = Counter()
    for q in queries:
        target = by_doc[q["doc_id"]]
        meta = q["metadata"]
        aspect, phrasings = ASPECT_FOLLOW_UPS[target["qtype"]]
        assert q["text"] in phrasings and target["focus"].lower() not in q["text"].lower(), "generic words, no focus"
        assert aspect_of(q["text"]) == aspect == meta["aspect"] and meta["qtype"] == target["qtype"]
        mix = meta["tags"][0]
        mixes[mix] += 1
        context = meta["context"]
        assert target["focus"] in (context[-2] if mix.endswith("acknowledgement") else context[-1])
        if mix.endswith("acknowledgement"):
            assert context[-1] in ACKNOWLEDGEMENTS
        if mix.startswith("switch"):
            assert target["focus"] not in context[0], "the conversation switches to the focus from another one"
        # resolved as /api/ask would: the follow-up takes the focus, whatever came between
        reading = read_turn(q["text"], read_conversation(context)[-1].topic)
        assert reading.kind == "follow_up" and target["focus"] in reading.searched
    assert len(mixes) >= 3, mixes


def test_a_boilerplate_answer_is_not_a_target():
    pairs = sample_pairs()
    same = {p["answer_key"]: [p["doc_id"]] for p in pairs}
    same["doc0-2"] = ["doc0-q2", "doc1-q2"]  # the same answer under two documents
    queries = aspect_conversations(pairs, same, 100, random.Random(1))
    assert "doc0-q2" not in {q["doc_id"] for q in queries}


def test_context_modes():
    context = ["What is (are) Gout ?", "thanks"]
    assert conversation_turn("resolve", "How is it treated?", context) == ("How is Gout treated?", "Gout", "follow_up")
    assert conversation_turn("concatenate", "How is it treated?", context)[0] == "thanks How is it treated?"
    assert conversation_turn("none", "How is it treated?", context)[0] == "How is it treated?"


def test_beir_queries_carry_their_tags(tmp_path):
    d = tmp_path / "set"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "Gout", "text": "Gout is treated with colchicine."}) + "\n")
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "How is it treated?",
                                                 "metadata": {"context": ["What is gout?", "thanks"], "tags": ["acknowledgement", "treatment"]}}) + "\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    evalset = load_beir(d)
    assert evalset.tags == {"q1": ["acknowledgement", "treatment"]} and evalset.context == {"q1": ["What is gout?", "thanks"]}


def test_eval_context_modes_search_what_ask_would():
    from evals.runner import contextual_search

    searched = []

    class Service:
        def search(self, query, k):
            searched.append(query)

            class Result:
                hits = []
            return Result()

    context = ["What are the causes of Gout?", "What is (are) Fabry disease ?", "ok, thanks"]
    for mode in ("resolve", "concatenate", "none"):
        contextual_search(Service(), mode)("How is it treated?", context, 10)
    assert searched == ["How is Fabry disease treated?", "ok, thanks How is it treated?", "How is it treated?"]


def test_the_sample_keeps_only_its_focuses_documents(tmp_path):
    from evals.medquad_devsets import write_sample

    src = tmp_path / "medquad-followup-aspects"
    (src / "qrels").mkdir(parents=True)
    pairs = sample_pairs()
    (src / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": p["doc_id"], "title": p["question"], "text": p["text"]}) for p in pairs) + "\n")
    queries = [{"_id": "fa-doc0-q2", "text": "How is it treated?", "metadata": {"context": ["What is (are) Gout ?"], "tags": ["plain"]}},
               {"_id": "fa-doc1-q3", "text": "What are the symptoms?", "metadata": {"context": ["What is (are) Fabry disease ?", "What is (are) Alpha thalassemia ?"],
                                                                                  "tags": ["switch"]}}]
    (src / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (src / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nfa-doc0-q2\tdoc0-q2\t1\nfa-doc1-q3\tdoc1-q3\t1\n")
    (src / "doc_types.tsv").write_text("corpus-id\tqtype\n")
    counts = write_sample(tmp_path, 1, seed=3)
    sample = tmp_path / "medquad-followup-aspects-sample"
    (query,) = [json.loads(line) for line in (sample / "queries.jsonl").read_text().splitlines()]
    docs = {json.loads(line)["_id"].rsplit("-q", 1)[0] for line in (sample / "corpus.jsonl").read_text().splitlines()}
    focus_docs = {"fa-doc0-q2": {"doc0"}, "fa-doc1-q3": {"doc1"}}[query["_id"]]
    assert docs == focus_docs and counts["sample_documents"] == 5 * len(focus_docs)
    assert load_beir(sample).qrels == {query["_id"]: {query["_id"][3:]: 1}}

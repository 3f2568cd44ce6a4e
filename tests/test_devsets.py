"""Public dev sets (evals.public_devsets), the judged@10 metric, and the no-match questions."""

import json
from pathlib import Path

import pytest

from evals.datasets import NOMATCH_KINDS, EvalSetError, load_beir, load_nomatch
from evals.metrics import METRICS, evaluate, means
from evals.public_devsets import DevSetError, build_medicationqa, build_mediqa, main, write_beir

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def mqa(row_id, question, answer, focus="drug", section="DOSAGE AND ADMINISTRATION", qtype="Dose", url="https://example.org/x"):
    return {"id": row_id, "question": question, "focus": focus, "question_type": qtype, "answer": answer, "section_title": section, "url": url}


MEDICATIONQA_ROWS = [
    mqa("mqa-0001", "how much ativan is normal", "Ativan is given orally.\n\nThe usual range is 2 to 6 mg/day", focus="Ativan"),
    mqa("mqa-0002", "what is lorazepam used for", "It treats anxiety.", focus="lorazepam", section="NA"),
    # the same answer as mqa-0001 but for its spacing and case: one document, judged for both questions
    mqa("mqa-0003", "normal daily dose for ativan?", "ativan is given orally. The usual range is 2 to 6 mg/day", focus="ativan"),
    # a question asked again with another answer: one query judged against both answers
    mqa("mqa-0004", "How much Ativan is  normal", "Tablets of 0.5, 1 and 2 mg.", focus="Ativan", section="HOW SUPPLIED"),
    # the same question and the same answer again: nothing new
    mqa("mqa-0005", "how much ativan is normal", "Ativan is given orally. The usual range is 2 to 6 mg/day", focus="Ativan"),
    # no answer: the annotators' placeholder, and an empty one
    mqa("mqa-0006", "is losartan gluten free?", "Unanswerable", focus="losartan"),
    mqa("mqa-0007", "what color is phenytoin", "   ", focus="phenytoin"),
    # an answer shared by two drugs: both focuses in the title
    mqa("mqa-0008", "what schedule is cromolyn", "DEA Schedule: None", focus="cromolyn", section="n/a"),
    mqa("mqa-0009", "is tudorza a controlled drug", "DEA Schedule: None", focus="Tudorza", section="n/a"),
    {"id": "mqa-0010", "question": "", "answer": "orphan answer"},
]


def test_medicationqa_builder_merges_and_skips_out_loud():
    d = build_medicationqa(MEDICATIONQA_ROWS)
    docs = {doc["_id"]: doc for doc in d.corpus}
    assert list(docs) == ["mqa-0001-a", "mqa-0002-a", "mqa-0004-a", "mqa-0008-a"]
    assert docs["mqa-0001-a"]["title"] == "Ativan — DOSAGE AND ADMINISTRATION", "focus, then the section title"
    assert docs["mqa-0001-a"]["text"].startswith("Ativan is given orally.\n\n"), "the first text is kept as it was"
    assert docs["mqa-0001-a"]["metadata"]["rows"] == ["mqa-0001", "mqa-0003", "mqa-0005"]
    assert docs["mqa-0002-a"]["title"] == "lorazepam", "a section title of NA says nothing"
    assert docs["mqa-0008-a"]["title"] == "cromolyn / Tudorza"
    assert [(q["_id"], q["text"]) for q in d.queries] == [("mqa-0001", "how much ativan is normal"), ("mqa-0002", "what is lorazepam used for"),
                                                       ("mqa-0003", "normal daily dose for ativan?"), ("mqa-0008", "what schedule is cromolyn"),
                                                       ("mqa-0009", "is tudorza a controlled drug")]
    assert d.queries[0]["metadata"]["rows"] == ["mqa-0001", "mqa-0004", "mqa-0005"]
    assert d.qrels == [("mqa-0001", "mqa-0001-a", 1), ("mqa-0001", "mqa-0004-a", 1), ("mqa-0002", "mqa-0002-a", 1),
                       ("mqa-0003", "mqa-0001-a", 1), ("mqa-0008", "mqa-0008-a", 1), ("mqa-0009", "mqa-0008-a", 1)]
    c = d.counts
    assert c["rows"] == 10 and c["rows_without_id_or_question"] == 1 and c["rows_with_placeholder_answer"] == 1 and c["rows_with_empty_answer"] == 1
    assert c["rows_used"] == 7 and c["documents"] == 4 and c["answer_rows_merged_into_an_earlier_document"] == 3
    assert c["documents_merged_from_texts_differing_in_spacing_or_case"] == 1 and c["documents_answering_several_questions"] == 2
    assert c["question_rows_merged_into_an_earlier_query"] == 2 and c["repeated_question_rows_with_the_same_answer"] == 1
    assert c["queries_without_a_usable_answer"] == 2 and c["queries"] == 5 and c["queries_with_several_answers"] == 1 and c["qrels"] == 6
    notes = "\n".join(d.notes)
    assert "mqa-0006 ('Unanswerable')" in notes and "mqa-0007: empty answer" in notes and "no id or no question" in notes
    assert "not queries: mqa-0006, mqa-0007" in notes

    plain = build_medicationqa(MEDICATIONQA_ROWS, titles="section")
    assert plain.name == "medicationqa-section-titles" and plain.qrels == d.qrels
    assert [doc["title"] for doc in plain.corpus] == ["DOSAGE AND ADMINISTRATION", "", "HOW SUPPLIED", ""], "no focus; an empty title is left to the importer"
    with pytest.raises(ValueError, match="titles must be one of"):
        build_medicationqa(MEDICATIONQA_ROWS, titles="drug")


def mediqa_q(qid, question, *answers):
    return {"qid": qid, "question": question, "answers": [{"aid": f"{qid}_Answer{i}", "text": t, "reference_score": s, "url": f"https://example.org/{i}"}
                                                          for i, (t, s) in enumerate(answers, start=1)]}


MEDIQA_QUESTIONS = [
    ("train-alexa", mediqa_q("alexa-1", "What is Flu?", ("What is Flu?: The flu is an infection.", 4), ("Smoking and surgery: Quit first.", 1))),
    ("train-alexa", mediqa_q("alexa-2", "What causes Flu?", ("what is flu?:  the flu is an infection.", 2), ("Flu causes: A virus.", 4),
                             ("Flu: bad score", 7), ("", 3))),
    ("validation", mediqa_q("val-3", "Achalasia spasms after surgery", ("Achalasia: Spasms may continue.", 3), ("Achalasia: Spasms may continue.", 1))),
]


def test_mediqa_builder_pools_answers_and_keeps_every_judgment():
    d = build_mediqa(MEDIQA_QUESTIONS)
    assert [(doc["_id"], doc["title"]) for doc in d.corpus] == [("alexa-1-a1", "What is Flu?"), ("alexa-1-a2", "Smoking and surgery"),
                                                               ("alexa-2-a2", "Flu causes"), ("val-3-a1", "Achalasia")]
    assert d.corpus[0]["metadata"]["answers"] == ["alexa-1/alexa-1_Answer1", "alexa-2/alexa-2_Answer1"]
    assert d.qrels == [("alexa-1", "alexa-1-a1", 3), ("alexa-1", "alexa-1-a2", 0), ("alexa-2", "alexa-1-a1", 1), ("alexa-2", "alexa-2-a2", 3),
                       ("val-3", "val-3-a1", 2)], "grade = reference_score - 1; grade 0 is kept; a text repeated for one question keeps its higher grade"
    assert [q["metadata"]["split"] for q in d.queries] == ["train-alexa", "train-alexa", "validation"]
    c = d.counts
    assert c["answers"] == 8 and c["documents"] == 4 and c["answers_merged_into_an_earlier_document"] == 2
    assert c["answers_with_a_bad_score"] == 1 and c["answers_with_empty_text"] == 1 and c["same_text_twice_for_one_question"] == 1
    assert c["documents_judged_for_several_questions"] == 1 and c["documents_merged_from_texts_differing_in_spacing_or_case"] == 1
    assert (c["grade_0"], c["grade_1"], c["grade_2"], c["grade_3"]) == (1, 1, 1, 2) and c["qrels"] == 5
    assert any("reference_score 7" in n for n in d.notes) and any("empty text" in n for n in d.notes)
    with pytest.raises(DevSetError, match="'alexa-1' already used in train-alexa"):
        build_mediqa([*MEDIQA_QUESTIONS, ("validation", mediqa_q("alexa-1", "again", ("x", 2)))])


def test_written_sets_load_as_beir_and_rewrite_byte_identical(tmp_path):
    for devset in (build_medicationqa(MEDICATIONQA_ROWS), build_mediqa(MEDIQA_QUESTIONS)):
        first = write_beir(devset, tmp_path / "a" / devset.name)
        again = write_beir(build_medicationqa(MEDICATIONQA_ROWS) if devset.name == "medicationqa" else build_mediqa(MEDIQA_QUESTIONS),
                           tmp_path / "b" / devset.name)
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "devset.json"):
            assert (first / name).read_bytes() == (again / name).read_bytes(), name
        loaded = load_beir(first)
        assert set(loaded.queries) == {q["_id"] for q in devset.queries}
        assert sum(len(j) for j in loaded.qrels.values()) == len(devset.qrels)
        assert json.loads((first / "devset.json").read_text())["counts"] == devset.counts
    assert load_beir(tmp_path / "a" / "mediqa").qrels["alexa-1"] == {"alexa-1-a1": 3, "alexa-1-a2": 0}


@pytest.mark.skipif(not (SHARED_DATA / "medicationqa" / "medicationqa.jsonl").exists() or not (SHARED_DATA / "mediqa2019-qa" / "validation.jsonl").exists(),
                    reason=f"the public data is not at {SHARED_DATA} (medicationqa/, mediqa2019-qa/); nothing to build")
def test_public_devsets_from_the_shared_data(tmp_path, capsys):
    assert main(["--data", str(SHARED_DATA), "--out", str(tmp_path / "one")]) == 0
    printed = capsys.readouterr().out
    assert main(["--data", str(SHARED_DATA), "--out", str(tmp_path / "two")]) == 0
    for name in ("medicationqa", "mediqa"):
        for f in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "devset.json"):
            assert (tmp_path / "one" / name / f).read_bytes() == (tmp_path / "two" / name / f).read_bytes(), f"{name}/{f} differs on a re-run"
    m = json.loads((tmp_path / "one" / "medicationqa" / "devset.json").read_text())["counts"]
    assert (m["rows"], m["documents"], m["queries"], m["qrels"]) == (690, 647, 638, 676)
    assert (m["rows_with_placeholder_answer"], m["answer_rows_merged_into_an_earlier_document"], m["question_rows_merged_into_an_earlier_query"]) == (13, 30, 39)
    q = json.loads((tmp_path / "one" / "mediqa" / "devset.json").read_text())["counts"]
    assert (q["questions"], q["answers"], q["documents"], q["qrels"], q["grade_0"]) == (128, 1086, 731, 1086, 147)
    assert "13 row(s) whose answer is a placeholder" in printed
    evalset = load_beir(tmp_path / "one" / "mediqa")
    assert len(evalset.judged_queries()) == 128 and "dropped_judged_queries" not in evalset.source


def test_judged_at_10_is_the_share_of_the_top_10_with_any_judgment():
    qrels = {"q1": {"a": 2, "b": 0, "c": 1}, "q2": {"d": 1}, "q3": {"e": 1}, "q4": {"f": 0, "g": 1}}
    ranking = {
        # a (graded 2) and b (graded 0: judged, not relevant) in the top 10; c is judged but 15th
        "q1": [("a", 0.9), ("x", 0.8), ("b", 0.7), ("y", 0.6)] + [(f"z{i}", 0.1) for i in range(10)] + [("c", 0.01)],
        "q2": [("d", 1.0)],  # a ranking shorter than 10: the missing places count as unjudged, as in P@10
        "q4": [(u, 1.0) for u in ("f", "g")] + [(f"n{i}", 0.5) for i in range(8)],
    }
    per = evaluate(qrels, ranking)
    assert [per[q]["judged@10"] for q in ("q1", "q2", "q3", "q4")] == [0.2, 0.1, 0.0, 0.2]
    assert evaluate(qrels, ranking, threshold=2)["q4"]["judged@10"] == 0.2, "the relevance threshold does not change what is judged"
    assert means(per)["judged@10"] == pytest.approx(0.125)
    assert "judged@10" in METRICS


def test_load_nomatch_reads_the_project_set_and_rejects_bad_lines(tmp_path):
    questions = load_nomatch(REPO / "evals" / "nomatch")
    assert len(questions) == 50 and len({q.id for q in questions}) == 50
    assert {q.kind for q in questions} == set(NOMATCH_KINDS)
    assert questions[0].id == "nm001" and load_nomatch(REPO / "evals" / "nomatch" / "queries.jsonl") == questions
    bad = tmp_path / "q.jsonl"
    for text, message in (('{"id": "a", "query": "x", "kind": "off-topic"}\n{"id": "a", "query": "y", "kind": "gibberish"}\n', r"q.jsonl:2: duplicate id 'a'"),
                          ('{"id": "a", "query": "x", "kind": "unknown"}\n', r"q.jsonl:1: kind 'unknown' is not one of"),
                          ('{"id": "a", "query": "  ", "kind": "gibberish"}\n', r"q.jsonl:1: .*needs a non-empty id and query"),
                          ('{"id": "a", "query": "x", "kind": "off-topic"}\n{"id": \n', r"q.jsonl:2: not valid JSON"),
                          ("\n", r"no questions")):
        bad.write_text(text)
        with pytest.raises(EvalSetError, match=message):
            load_nomatch(bad)
    with pytest.raises(EvalSetError, match="missing"):
        load_nomatch(tmp_path / "nowhere.jsonl")


def test_unanswerable_dev_questions_are_those_that_name_no_topic_of_the_default_corpus():
    from evals.nomatch_calibration import corpus_topic_words, off_corpus

    titles = ["How should iron deficiency anemia be treated?", "When is a red cell transfusion indicated?"]
    questions = ["how to treat acne", "what is the treatment for anemia in pregnancy", "how is psoriasis treated",
                 "what causes gout", "can iron tablets cause constipation", "when is surgery indicated for gallstones",
                 "how is eczema treated", "what is the dose of ibuprofen", "how should a migraine be treated", "is a transfusion safe"]
    topics = corpus_topic_words(titles, questions, share=0.2)
    # words most of the questions use ("treat") name no topic; rare title words ("anemia", "iron") do
    assert {"anemia", "iron", "transfus"} <= topics and "treat" not in topics
    kept = off_corpus(questions, topics)
    assert "how to treat acne" in kept and "what causes gout" in kept
    assert not {"what is the treatment for anemia in pregnancy", "can iron tablets cause constipation", "is a transfusion safe"} & set(kept)

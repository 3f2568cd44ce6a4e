"""Who a question is about against who a passage is written for (retrieval/population.py)."""

from pathlib import Path

import pytest

from indexer.build import build_index
from indexer.index_store import load_index
from retrieval.population import Patient, mismatched, patient_of
from retrieval.search import Filters, RetrievalSettings, SearchService

from fakes import FakeEmbedder

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
CHILDREN = "How is iron deficiency anemia in children evaluated and treated? . From the Guidelines"
PREGNANCY = "How is iron deficiency anemia in pregnancy diagnosed and treated?"
PARTNERS = "Can a male partner get a urinary tract infection from a female partner with a Klebsiella UTI?"


@pytest.mark.parametrize("question, patient", [
    ("65 year old man with new iron deficiency anaemia, next step?", Patient("adult", True)),
    ("should a 35-year-old woman with heavy periods have a colonoscopy?", Patient("adult", False)),
    ("iron dose for toddler with iron deficiency anemia", Patient("child", False)),
    ("9 month old baby, pale, drinks a lot of cow's milk", Patient("child", False)),
    ("tired teenager with heavy periods what blood tests", Patient(None, False)),
    ("16 year old with low ferritin", Patient(None, False)),
    ("causes of chronic microcytosis", Patient(None, False)),
    ("6 y.o. boy, pale", Patient("child", False)),
    ("iron dose for our daughter, aged 3", Patient("child", False)),
    # Found by trying to break it: a word inside a hyphenated term, the asker's relations, the
    # doctor's "he", and mother-and-baby questions named the wrong patient and hid the answer.
    ("IV lidocaine infusion dose in Child-Pugh C cirrhosis", Patient(None, False)),
    ("transfusion threshold in a woman of child-bearing age", Patient("adult", False)),
    ("I am the mother of a 2 year old and my hemoglobin is 7, do I need a transfusion?", Patient(None, False)),
    ("Hb 7 after delivering my baby, do I need a blood transfusion?", Patient(None, False)),
    ("I am a grandmother, my grandson is anaemic, how much iron should he take?", Patient("child", False)),
    ("The doctor said he thinks my heavy periods caused my iron deficiency", Patient(None, False)),
    ("my partner is pregnant and has thalassaemia trait, should he be tested?", Patient(None, False)),
])
def test_the_patient_a_question_names(question, patient):
    assert patient_of(question) == patient


def test_a_passage_for_other_patients_is_a_mismatch():
    man = patient_of("65 year old man with iron deficiency anaemia")
    assert mismatched(man, CHILDREN) and mismatched(man, PREGNANCY)
    assert not mismatched(man, PARTNERS), "a passage about men and women fits a man"
    assert not mismatched(man, "How should serum ferritin be interpreted?")
    toddler = patient_of("toddler with iron deficiency")
    assert not mismatched(toddler, CHILDREN)
    assert mismatched(toddler, "What tests are indicated for a young adult with chronic abdominal complaints?")
    assert not mismatched(patient_of("iron deficiency anaemia work up"), CHILDREN), "no patient named: every passage fits"


def test_search_puts_passages_for_other_patients_below_the_rest(tmp_path):
    root = tmp_path / "index"
    build_index([CORPUS], root, FakeEmbedder())
    service = SearchService(load_index(root), FakeEmbedder(), ranker=None, no_match=None)
    query = "65 year old man with new iron deficiency anaemia, next step?"
    man = patient_of(query)
    everything = Filters(retracted="exclude")  # else passages citing a retracted paper go last of all

    def other_patients(hit):
        return mismatched(man, " . ".join((hit.chunk.article_title, *hit.chunk.section_path)))

    hits = service.search(query, 300, everything).hits
    moved = [i for i, h in enumerate(hits) if other_patients(h)]
    assert {hits[i].chunk.article_id for i in moved} >= {"iron-deficiency-children", "anemia-in-pregnancy", "heavy-menstrual-bleeding-iron-deficiency"}
    assert min(moved) > max(i for i, h in enumerate(hits) if not other_patients(h))
    off = service.search(query, 300, everything, settings=RetrievalSettings(population=False)).hits
    assert min(i for i, h in enumerate(off) if other_patients(h)) < max(i for i, h in enumerate(off) if not other_patients(h))

"""MedQuAD XML, read in place from shared/data/medquad (skipped when it is absent)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from indexer.importers import run_import

from import_helpers import MEDQUAD_SAMPLE as SAMPLE
from import_helpers import link_sample, read_back


def answers(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    texts = ["".join(e.itertext()) for e in root.iter() if e.tag.lower() == "answer"]
    return [t for t in texts if t.strip()]


def words_of_section(section) -> list[str]:
    text = " ".join(block.text for block in section.blocks)
    return [w for w in text.replace(" [1]", "").split() if w != "-"]


@pytest.fixture(scope="module")
def sample(medquad_root: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("medquad")
    source = link_sample(medquad_root, tmp / "medquad", SAMPLE)
    report = run_import("medquad", source, tmp / "out")
    return report, read_back(tmp / "out"), tmp


def test_sample_counts(sample):
    report, articles, _ = sample
    assert report.problems == []
    assert report.written == 7 == len(articles)
    assert report.skipped == {
        "document: answers removed for copyright": 2,
        "document: no answered question": 1,
        "document: no question-answer pairs": 1,
        "question-answer pair: answer removed for copyright": 5 + 12,  # ADAM 0000001 has 5 pairs, Drugs 0000001 has 12
        "question-answer pair: empty answer": 2,  # GARD 0002079's only pair and one of GARD 0002080's
    }
    assert not any(a.metadata["source"] in ("ADAM", "MPlusDrugs") for a in articles.values())


def test_document_becomes_article(sample, medquad_root: Path):
    _, articles, _ = sample
    article = articles["medquad-cancergov-0000001-1"]
    assert article.title == "Adult Acute Lymphoblastic Leukemia"
    assert article.audience == "patient" and article.last_updated is None
    ref = article.references[1]
    assert (ref.kind, ref.title, ref.url) == (
        "education",
        "Adult Acute Lymphoblastic Leukemia",
        "https://www.cancer.gov/types/leukemia/patient/adult-all-treatment-pdq",
    )
    assert "cancer.gov" in ref.source
    meta = article.metadata
    assert meta["original_id"] == "0000001_1"
    assert meta["source_file"] == "1_CancerGov_QA/0000001_1.xml"
    assert meta["cuis"] == ["C0751606"] and meta["semantic_types"] == ["T191"] and meta["semantic_group"] == "Disorders"
    assert meta["question_types"] == ["information", "symptoms", "exams and tests", "outlook", "susceptibility", "stages", "treatment"]
    # one "##" section per question, with the question (tidied) as heading
    assert [s.heading for s in article.sections][:2] == [
        "What is (are) Adult Acute Lymphoblastic Leukemia?",
        "What are the symptoms of Adult Acute Lymphoblastic Leukemia?",
    ]
    assert article.sections[4].heading == "Who is at risk for Adult Acute Lymphoblastic Leukemia?"
    assert all(len(s.path) == 1 for s in article.sections)


def test_answers_keep_paragraphs_bullets_and_every_word(sample, medquad_root: Path):
    _, articles, _ = sample
    for article in articles.values():
        source_answers = answers(medquad_root / article.metadata["source_file"])
        assert len(article.sections) == len(source_answers)
        for section, answer in zip(article.sections, source_answers):
            assert words_of_section(section) == [w for w in answer.split() if w != "-"], section.heading
            # the document's URL reference is cited once in every section
            assert sum(1 for b in section.blocks for c in b.citations if c.numbers == (1,)) == 1
    symptoms = articles["medquad-cancergov-0000001-1"].sections[1].blocks
    items = [b.text for b in symptoms if b.kind == "list_item"]
    assert items[:2] == ["Weakness or feeling tired.", "Fever or night sweats."]
    assert len(items) == 10
    assert symptoms[-1].kind == "paragraph" and symptoms[-1].text.startswith("These and other signs")


def test_repeated_document_ids_become_distinct_articles(sample):
    _, articles, _ = sample
    a, b = articles["medquad-cancergov-0000013-2-1"], articles["medquad-cancergov-0000013-2-2"]
    assert a.metadata["original_id"] == b.metadata["original_id"] == "0000013_2"
    assert (a.title, b.title) == ("Polycythemia Vera", "Primary Myelofibrosis")


def test_odd_vocabulary_files(sample):
    _, articles, _ = sample
    ninds = articles["medquad-ninds-0000007"]
    assert ninds.title == "Holmes-Adie"
    assert ninds.metadata["original_id"] == "0000007" and ninds.metadata["source"] == "NINDS"
    assert ninds.references[1].url == "http://www.ninds.nih.gov/disorders/holmes_adie/holmes_adie.htm"
    assert ninds.sections[0].heading == "What is holmes-adie syndrome?"
    assert len(ninds.sections) == 4
    cdc = articles["medquad-cdc-0000397"]
    assert cdc.title == "Parasites - Taeniasis" and cdc.metadata["original_id"] == "0000397"
    assert "cuis" not in cdc.metadata  # <CUI></CUI> is no CUI
    assert len(cdc.sections) == 5


def test_synonyms_and_partial_documents(sample):
    report, articles, _ = sample
    ghr = articles["medquad-ghr-0000005"]
    assert "hereditary ceruloplasmin deficiency" in ghr.metadata["synonyms"]
    gard = articles["medquad-gard-0002080"]
    assert len(gard.sections) == 1
    assert any(w.file == "2_GARD_QA/0002080.xml" and w.position == "QAPair pid 1" for w in report.warnings)


def test_malformed_xml_is_reported_and_the_rest_imports(medquad_root: Path, tmp_path: Path):
    source = link_sample(medquad_root, tmp_path / "medquad", ["3_GHR_QA/0000005.xml"])
    broken = source / "3_GHR_QA" / "9999999.xml"
    broken.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document id="9999999" source="GHR" url="https://example.org/x">\n'
        "<Focus>Invented condition</Focus>\n"
        "<QAPairs><QAPair pid=\"1\"><Question qid=\"9999999-1\" qtype=\"information\">What is it ?</Question>\n"
        "<Answer>Unclosed answer</QAPair>\n"
        "</QAPairs></Document>\n",
        encoding="utf-8",
    )
    report = run_import("medquad", source, tmp_path / "out")
    assert report.written == 1 and list(read_back(tmp_path / "out")) == ["medquad-ghr-0000005"]
    (problem,) = report.problems
    assert problem.file == "3_GHR_QA/9999999.xml"
    assert problem.position == "line 5, column 26"
    assert "not well-formed" in problem.message
    assert report.skipped == {"file: not well-formed XML": 1}


@pytest.mark.slow
def test_whole_collection(medquad_root: Path, tmp_path: Path):
    """The whole of MedQuAD: every answered pair is written, every skip is counted, all parse."""
    report = run_import("medquad", medquad_root, tmp_path)
    assert report.problems == []
    assert report.written == 5490
    assert report.skipped == {
        "document: answers removed for copyright": 5777,
        "document: no answered question": 1,
        "document: no question-answer pairs": 6,
        "question-answer pair: answer removed for copyright": 31029,
        "question-answer pair: empty answer": 5,
    }
    articles = read_back(tmp_path)
    pairs = sum(len(a.sections) for a in articles.values())
    assert pairs == 16423
    # every pair in the collection is accounted for
    assert pairs + 31029 + 5 == 47457

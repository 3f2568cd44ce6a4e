"""One number per publication in an answer's reference list: the same source cited by two of
the answer's articles (under different numbers, with its PMID in one and only its DOI in the
other) is numbered once, in the key points, the passages, the list and the exports."""

import textwrap

import pytest
from fastapi.testclient import TestClient

from indexer.build import build_index
from indexer.citations import find_citations
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.answers import reference_keys
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from paths import REPO
from sample_articles import article

BSG = "British Society of Gastroenterology guidelines for the management of iron deficiency anaemia in adults"

# The BSG guideline (PubMed 34497146, doi 10.1136/gutjnl-2021-325210, as the default corpus cites it).
WORKUP_REFS = textwrap.dedent(f"""\
  - id: 1
    kind: guideline
    title: "{BSG}"
    source: "Gut (British Society of Gastroenterology)"
    year: 2021
    pmid: "34497146"
    doi: "10.1136/gutjnl-2021-325210"
  - id: 2
    kind: research
    title: A review
    source: A journal
    year: 2019
""")
# The same guideline as reference 2, given by its DOI only (upper case, as a resolver URL); "A review"
# again as reference 1 with its title spaced and punctuated differently; and another year's review.
TREATMENT_REFS = textwrap.dedent(f"""\
  - id: 1
    kind: research
    title: "A  Review."
    source: A journal
    year: 2019
  - id: 2
    kind: guideline
    title: "{BSG} (full text)"
    source: Gut
    year: 2021
    doi: "https://doi.org/10.1136/GUTJNL-2021-325210"
  - id: 3
    kind: research
    title: A review
    source: A journal
    year: 2020
""")
WORKUP = """
## From the Guidelines

Iron deficiency anaemia in adults is confirmed by a low serum ferritin before any treatment is chosen [1].

## From the Research

Serum ferritin below 30 micrograms per litre confirms iron deficiency in adults [2].
"""
TREATMENT = """
## From the Guidelines

Iron deficiency anaemia in adults is treated with oral iron once daily or on alternate days [2].

## From the Research

Oral iron treatment of iron deficiency in adults raises ferritin within weeks [1]. Alternate-day oral iron dosing is absorbed better [3].
"""


@pytest.fixture
def client(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "workup.md").write_text(article("workup", "How is iron deficiency anaemia confirmed?", WORKUP, references=WORKUP_REFS))
    (corpus / "treatment.md").write_text(article("treatment", "How is iron deficiency anaemia treated?", TREATMENT, references=TREATMENT_REFS))
    build_index([corpus], tmp_path / "index", FakeEmbedder())
    settings = Settings(index_dir=tmp_path / "index", conversations_db=tmp_path / "conversations.sqlite",
                        answers_db=tmp_path / "answers.sqlite")
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as c:
        yield c


def test_a_source_cited_by_two_articles_has_one_number(client):
    a = client.post("/api/ask", json={"question": "iron deficiency anaemia in adults ferritin oral iron treatment"}).json()
    assert {p["article_id"] for g in a["groups"] for p in g["passages"]} == {"workup", "treatment"}
    refs = a["references"]
    assert [r["number"] for r in refs] == list(range(1, len(refs) + 1))
    bsg = [r for r in refs if r["title"].startswith("British Society")]
    review_2019 = [r for r in refs if r["title"].lower().startswith("a") and r["year"] == 2019]
    assert len(bsg) == 1 and len(review_2019) == 1, [(r["number"], r["title"], r["year"]) for r in refs]
    assert sorted((c["article_id"], c["original_number"]) for c in bsg[0]["cited_in"]) == [("treatment", 2), ("workup", 1)]
    assert sorted((c["article_id"], c["original_number"]) for c in review_2019[0]["cited_in"]) == [("treatment", 1), ("workup", 2)]
    assert [r["year"] for r in refs if r["title"] == "A review" and r["year"] == 2020] == [2020], "another year's review is another source"

    # Every passage's brackets name the one number: both articles' guideline sentences cite the BSG number.
    guideline_cites = {p["article_id"]: p["citations"] for p in a["groups"][0]["passages"]}
    assert guideline_cites == {"workup": [bsg[0]["number"]], "treatment": [bsg[0]["number"]]}
    for point in a["key_points"]:
        numbers = sorted({n for span in find_citations(point["text"]) for n in span.numbers})
        assert numbers == sorted(point["citations"])
        for n in numbers:
            assert point["article_id"] in {c["article_id"] for c in refs[n - 1]["cited_in"]}

    ris = client.get(f"/api/answers/{a['answer_id']}/references.ris").text
    assert ris.count("AN  - PMID:34497146") == 1 and ris.count("TY  - ") == len(refs) + 1  # and the answer's own record
    first, second = sorted(bsg[0]["cited_in"], key=lambda c: c["article_id"] != bsg[0]["article_id"])
    assert (f"cited in \u201c{first['article_title']}\u201d ({first['article_id']}) as [{first['original_number']}]; "
            f"\u201c{second['article_title']}\u201d ({second['article_id']}) as [{second['original_number']}]") in ris


def test_the_default_corpus_never_numbers_a_publication_twice(tmp_path):
    from retrieval.answers import build_answer

    build_index([REPO / "corpus"], tmp_path / "index", FakeEmbedder())
    service = SearchService(load_index(tmp_path / "index"), FakeEmbedder())
    merged = 0
    for question in ("causes of chronic microcytosis", "how is iron deficiency anaemia treated?", "intravenous iron in pregnancy",
                     "work-up of iron deficiency without anaemia", "when is transfusion indicated in anaemia?"):
        answer = build_answer(service, question, question)
        keys = [k for r in answer.references if r.reference is not None for k in reference_keys(r.reference)]
        assert len(keys) == len(set(keys)), f"{question}: a publication numbered twice"
        merged += sum(len(r.cited_in) > 1 for r in answer.references)
    assert merged, "the questions draw on articles sharing a source (the BSG guideline), so some reference is cited by two"


def test_reference_keys():
    from indexer.vocabulary import EvidenceKind, Reference

    def ref(**kw):
        return Reference(id=1, kind=EvidenceKind.GUIDELINE, title=kw.pop("title", "T"), source=kw.pop("source", "S"), **kw)

    assert reference_keys(ref(pmid=" 34497146 ", doi="10.1136/gutjnl-2021-325210")) == [("pmid", "34497146"), ("doi", "10.1136/gutjnl-2021-325210")]
    assert reference_keys(ref(doi="https://doi.org/10.1136/GUTJNL-2021-325210")) == [("doi", "10.1136/gutjnl-2021-325210")]
    assert reference_keys(ref(url="https://www.ncbi.nlm.nih.gov/books/NBK569873/")) == reference_keys(ref(url="http://ncbi.nlm.nih.gov/books/NBK569873"))
    assert reference_keys(ref(title="A  Review.", year=2019)) == reference_keys(ref(title="a review", year=2019))
    assert reference_keys(ref(title="A review", year=2019)) != reference_keys(ref(title="A review", year=2020))
    assert reference_keys(ref(title="A review", source="J1")) != reference_keys(ref(title="A review", source="J2"))


def test_a_merged_reference_keeps_either_articles_retraction_notice_and_identifiers():
    from indexer.vocabulary import EvidenceKind, Notice, NoticeType, Reference
    from retrieval.answers import merge_references

    plain = Reference(id=4, kind=EvidenceKind.RESEARCH, title="A trial", source="A journal", year=2018, doi="10.1000/trial")
    flagged = Reference(id=1, kind=EvidenceKind.RESEARCH, title="A trial", source="A journal", year=2018, pmid="111",
                        notices=(Notice(NoticeType.RETRACTED, note="retracted by the journal"),))
    merged = merge_references(plain, flagged)
    assert merged.id == 4 and merged.retracted and merged.pmid == "111" and merged.doi == "10.1000/trial"
    assert merge_references(flagged, plain).notices == flagged.notices, "a notice is not repeated"

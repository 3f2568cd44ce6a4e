"""Query understanding, no match and the learned ranker over the default corpus with the fake
embedder: cases 13 (no content), 14 (abbreviation senses) and 15 (negation) in ../shared/cases,
spelling, shorthand, drug names, long messages, and the ranker's features and model."""

from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.index_store import load_index
from retrieval.abbreviations import Abbreviations
from retrieval.lay_terms import LayTerms
from retrieval.negation import asks_for, excluded_in, split_negation
from retrieval.nomatch import NO_CONTENT, NOTHING_KNOWN, WEAK_EVIDENCE, Evidence, NoMatchPolicy, phrase_cover
from retrieval.query_understanding import condense, content_words
from retrieval.ranker import FEATURES, LearnedRanker
from retrieval.regional_spelling import variants
from retrieval.search import Filters, RetrievalSettings, SearchService

from fakes import FakeEmbedder
from sample_articles import article

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
CASES = Path(__file__).resolve().parent.parent.parent / "shared" / "cases"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("qu") / "index"
    build_index([CORPUS], root, FakeEmbedder())
    return load_index(root)


@pytest.fixture(scope="module")
def service(index):
    return SearchService(index, FakeEmbedder(), ranker=None, no_match=None)


def _case(name: str, fallback: list[str]) -> list[str]:
    path = CASES / name / "queries.txt"
    return [q for q in path.read_text().splitlines() if q.strip()] if path.exists() else fallback


def test_case_13_no_content_gets_no_match(service):
    for query in _case("13-no-content", ["the", "what is it?", "asdfgh qwerty", "K+ 6.2"]):
        r = service.search(query, 5)
        assert r.hits == [] and r.no_match in (NO_CONTENT, NOTHING_KNOWN), query
    assert service.search("ferritin", 5).no_match is None


def test_case_14_abbreviation_sense_follows_the_other_words(service):
    parsed = service.read_query("SBP target C6 injury")
    assert "systolic blood pressure" in parsed.text and "peritonitis" not in parsed.text
    parsed = service.read_query("ascitic fluid PMN count SBP")
    assert "spontaneous bacterial peritonitis" in parsed.text and "systolic" not in parsed.text
    for query in _case("14-abbrev-ambiguity", ["SBP target C6 injury", "systolic BP target C6 injury"]):
        top3 = [h.chunk.article_id for h in service.search(query, 3).hits]
        assert "spinal-cord-injury-c6-c7-cardiovascular" in top3, query


def test_abbreviation_case_carries_meaning_only_where_entries_differ_by_case(tmp_path):
    f = tmp_path / "abbr.tsv"
    f.write_text("HbS\themoglobin S\nHBs\thepatitis B surface antigen\nHb\themoglobin\nSBP\tspontaneous bacterial peritonitis\tascites\n"
                 "SBP\tsystolic blood pressure\ttarget\n")
    a = Abbreviations.load(f)
    assert a.expansions("HbS") == ["hemoglobin S"] and a.expansions("HBs") == ["hepatitis B surface antigen"]
    assert a.expansions("hbs") == [], "HbS and HBs differ by case alone: neither is guessed from 'hbs'"
    assert a.expansions("low hb") == ["hemoglobin"]
    assert a.expansions("SBP") == ["spontaneous bacterial peritonitis", "systolic blood pressure"], "no chooser: every sense"


def test_case_15_negation_demotes_what_is_negated(service):
    for query in _case("15-negation", ["anaemia NOT iron deficiency", "anaemia not caused by iron deficiency"]):
        parsed = service.read_query(query)
        assert parsed.negated and "iron deficiency" in parsed.negated[0].lower(), query
        hits = service.search(query, 5).hits
        assert hits and not any("iron deficiency" in h.chunk.article_title.lower() for h in hits[:3]), query
    off = service.search("anaemia NOT iron deficiency", 5, settings=RetrievalSettings(negation=False))
    assert off.negated == []


def test_negation_forms():
    assert split_negation("anaemia -thalassemia") == ("anaemia", ["thalassemia"])
    assert split_negation("microcytosis without iron deficiency in adults") == ("microcytosis in adults", ["iron deficiency"])
    assert split_negation("why is iron not absorbed") == ("why is iron not absorbed", []), "a lower-case 'not' in a question is not an exclusion"
    assert split_negation("C6-C7 injury") == ("C6-C7 injury", [])


def test_without_that_names_a_topic_is_kept(service):
    parsed = service.read_query("iron deficiency without anaemia treatment fatigue")
    assert parsed.negated == [] and "without anemia" in parsed.question, "kept, in the index's own spelling"


def test_a_title_that_excludes_what_the_question_asks_for_ranks_below_the_rest(service):
    # "How should iron deficiency without anemia be managed?" does not answer a question about
    # iron deficiency anaemia; it still answers one about iron deficiency without anaemia.
    def without_anaemia(hits):
        return [i for i, h in enumerate(hits) if h.chunk.article_id == "iron-deficiency-without-anemia"]

    # Only this step: passages for other patients (children, pregnancy) and those citing a
    # retracted paper would go below these in turn.
    alone = RetrievalSettings(population=False)
    asked = service.search("65 year old man with new iron deficiency anaemia, next step?", 300, Filters(retracted="exclude"), settings=alone).hits
    others = [i for i, h in enumerate(asked) if h.chunk.article_id != "iron-deficiency-without-anemia"]
    assert without_anaemia(asked) and min(without_anaemia(asked)) > max(others)
    kept = service.search("iron deficiency without anaemia treatment fatigue", 5).hits
    assert without_anaemia(kept) and without_anaemia(kept)[0] == 0
    off = service.search("65 year old man with new iron deficiency anaemia, next step?", 300, Filters(retracted="exclude"),
                         settings=RetrievalSettings(negation=False, population=False)).hits
    assert min(without_anaemia(off)) < max(i for i, h in enumerate(off) if h.chunk.article_id != "iron-deficiency-without-anemia")


def test_excluded_in_and_asks_for():
    assert excluded_in("How should iron deficiency without anemia be managed?") == ("anemia",)
    assert excluded_in("Anemia of chronic disease") == ()
    assert asks_for("new iron deficiency anaemia", "anemia"), "British and American spellings name the same thing"
    assert not asks_for("iron deficiency without anaemia", "anemia")
    assert not asks_for("ferritin in heart failure", "anemia")


def test_a_regional_spelling_the_index_never_uses_is_searched_as_the_index_spells_it(service):
    parsed = service.read_query("microcytic anaemia differential diagnosis")
    assert parsed.question == "microcytic anemia differential diagnosis" and parsed.searched_for is None, \
        "a British spelling is not a mistake: nothing to tell the reader"
    assert service.read_query("haemochromatosis screening").question == "hemochromatosis screening", "the ae -> e rule, checked against the index"
    assert service.read_query("aerobic exercise").question == "aerobic exercise", "a digraph the index does not drop stays"
    assert service.read_query("microcytic anemia").question == "microcytic anemia"
    off = service.read_query("microcytic anaemia", RetrievalSettings(spelling=False))
    assert off.question == "microcytic anaemia"


def test_regional_variants():
    assert variants("anaemia") == ("anemia",) and variants("anemia")[0] == "anaemia", "breame's pair first"
    assert "coeliac" in variants("celiac") and "oedema" in variants("edema"), "an American word's British candidates"
    assert variants("sulphate")[0] == "sulfate"
    assert "ischemia" in variants("ischaemia") and "celiac" in variants("coeliac"), "medical words breame lacks: the digraph rule"
    assert variants("shoe") == () and variants("iron") == () and variants("ferritin") == ("faerritin", "foerritin"), \
        "only candidates: the reader keeps one only where the index uses it"


def test_lay_words_bring_the_clinical_term_the_index_uses(service):
    parsed = service.read_query("patient on a blood thinner needs a tooth pulled")
    assert parsed.question == "patient on a blood thinner needs a tooth pulled", "the words typed stay"
    assert "(anticoagulant; dental extraction)" in parsed.text or ("anticoagulant" in parsed.text and "dental extraction" in parsed.text)
    said = "anticoagulant before a blood thinner change"
    assert service.read_query(said).text == said, "a term the query says already is not added"
    assert not any("epistaxis" in c.text.lower() for c in service.understanding.index.chunks)
    assert "epistaxis" not in service.read_query("nosebleed after iron infusion").text, \
        "a term the index never uses (epistaxis) is not added"
    off = service.read_query("patient on a blood thinner", RetrievalSettings(lay_terms=False))
    assert off.text == "patient on a blood thinner"


def test_a_name_the_index_prefers_in_its_titles_brings_nothing(tmp_path):
    # An index whose pages are titled "Heart attack" (MEDIQA's are): adding "myocardial
    # infarction" would only pull in other pages. One that titles it clinically gets the term.
    def service_over(titles: list[str]) -> SearchService:
        corpus = tmp_path / f"corpus{len(list(tmp_path.iterdir()))}"
        corpus.mkdir()
        for n, title in enumerate(titles):
            body = f"## From the Guidelines\n\n{title} and myocardial infarction care after a heart attack [1, 2].\n"
            (corpus / f"a{n}.md").write_text(article(f"a{n}", title, body))
        build_index([corpus], corpus.parent / f"{corpus.name}-index", FakeEmbedder())
        return SearchService(load_index(corpus.parent / f"{corpus.name}-index"), FakeEmbedder(), ranker=None, no_match=None)

    lay = service_over(["What causes a heart attack?", "Heart attack symptoms", "Myocardial infarction in women"])
    assert lay.read_query("what causes a heart attack").text == "what causes a heart attack"
    clinical = service_over(["Causes of myocardial infarction", "Treating myocardial infarction", "Heart attack symptoms"])
    assert clinical.read_query("what causes a heart attack").text == "what causes a heart attack (myocardial infarction)"
    # Abbreviations the same way: MEDIQA's pages are titled "COPD", and appending the expansion
    # there cost two questions their best answer.
    short = service_over(["What causes COPD?", "COPD treatment", "Living with chronic obstructive pulmonary disease"])
    assert short.read_query("what causes COPD").text == "what causes COPD"
    spelled = service_over(["Chronic obstructive pulmonary disease causes", "Treating chronic obstructive pulmonary disease"])
    assert spelled.read_query("what causes COPD").text == "what causes COPD (chronic obstructive pulmonary disease)"


def test_what_trying_to_break_the_new_steps_found(service):
    # A dotless i or a long s matched a lay phrase under Unicode case folding and then named none:
    # a KeyError and a stack trace from /api/search.
    for query in ("blood th\u0131nner before surgery", "heavy per\u0131ods and iron", "\u017ftitches after surgery"):
        assert service.search(query, 3) is not None
    assert "iron deficiency" not in service.read_query("low iron diet for hemochromatosis").text, "a diet, not a finding"
    # A question that says "without anaemia" anywhere is about that topic too.
    both = service.search("difference between iron deficiency without anaemia and iron deficiency anaemia", 5).hits
    assert any(h.chunk.article_id == "iron-deficiency-without-anemia" for h in both)
    early = service.search("should iron deficiency be treated before anaemia develops?", 5).hits
    assert any(h.chunk.article_id == "iron-deficiency-without-anemia" for h in early), "'before anaemia' does not ask for anaemia"
    # Pasted text: a soft hyphen split the word, a ligature hid it.
    assert service.read_query("an\u00adaemia in pregnancy").question == "anemia in pregnancy"
    assert service.read_query("an\u00e6mia in pregnancy").question == "anemia in pregnancy"
    # Another regional spelling is not announced as a correction.
    for query in ("celiac disease and iron deficiency", "anesthesia and transfusion thresholds"):
        assert service.read_query(query).searched_for is None, query


def test_lay_terms_file_is_read_strictly(tmp_path):
    good = tmp_path / "lay.tsv"
    good.write_text("# comment\nwater pill\tdiuretic\nclot in the lung\tpulmonary embolism\nclot\tthrombus\n")
    terms = LayTerms.load(good)
    assert terms.find("Water  Pill and a clot in the lung") == [("Water  Pill", "diuretic"), ("clot in the lung", "pulmonary embolism")], \
        "whole words, any case or spacing, the longest phrase first"
    assert terms.find("clotting factors") == [], "whole words only"
    for text, message in (("water pill diuretic\n", "expected"), ("water pill\tdiuretic\nWater pill\tthiazide\n", "listed twice")):
        bad = tmp_path / "bad.tsv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            LayTerms.load(bad)
    assert len(LayTerms.load().terms) > 100, "the shipped list loads"


def test_spelling_corrects_unknown_words_only_and_says_so(service):
    r = service.search("ferritn level that rules out iron deficiency", 3)
    assert r.searched_for and "ferritin" in r.searched_for
    assert service.read_query("sideroblastc anemia diagnosis").question.startswith("sideroblastic")
    for query in ("IRIDA", "ferritin level", "MCHC low"):
        assert service.search(query, 3).searched_for is None, "known words and abbreviations are never corrected"
    assert service.read_query("irn studies").question == "irn studies", "words under five letters are never corrected"
    assert service.read_query("anemai").question == "anemia", "a transposition is one edit"
    # MedQuAD's "Prader-Willi" became "Prader-Will" and "Coffin-Siris" "Coffin-Ssris": a part of
    # a hyphenated name is not a word of its own, however close it is to one the index knows.
    for name in ("Sideroblastc-Smith syndrome", "Prader-Willi syndrome", "Coffin-Siris syndrome"):
        assert service.read_query(name).question == name
    off = service.read_query("ferritn level", RetrievalSettings(spelling=False))
    assert off.question == "ferritn level"


def test_shorthand_is_written_out(service):
    assert service.read_query("iron def in a 60yo postop").question == "iron deficiency in a 60 year old postoperative"
    assert service.read_query("lido infusion").question == "lidocaine infusion"
    assert service.read_query("PT and INR").question == "PT and INR", "capitals are abbreviations, not shorthand"


def test_brand_and_generic_drug_names_are_linked(service):
    parsed = service.read_query("tylenol for back pain")
    assert "paracetamol" in parsed.text and "acetaminophen" in parsed.text
    assert "paracetamol" not in service.read_query("tylenol for back pain", RetrievalSettings(drug_names=False)).text


def test_long_messages_are_condensed_to_focus_and_question(service):
    message = ("Hi doctor, my name is Ann. My mother is 70 and was told her blood count is low and she has small red cells. "
               "She has been taking omeprazole for years. What tests should she have? Thank you so much for your help, Ann")
    r = service.search(message, 3)
    assert r.searched_for and "What tests should she have?" in r.searched_for
    assert "Thank you" not in r.searched_for and "my name is" not in r.searched_for
    assert condense("short question about ferritin") == "short question about ferritin"


def test_content_words():
    assert content_words("what is it?") == [] and content_words("K+ 6.2") == []
    assert content_words("RBC 5.23 MCV 75.4") == ["RBC", "MCV"]


def test_weak_evidence_policy():
    policy = NoMatchPolicy(model="m", weights=(10.0, 0.0, 0.0, 0.0, 0.0, 0.0), bias=-5.0, threshold=0.5)
    assert policy.judge(Evidence(0.2, 0.0, 0.0, 0.0, 0.0, 0.0)) == WEAK_EVIDENCE
    assert policy.judge(Evidence(0.9, 0.0, 0.0, 0.0, 0.0, 0.0)) is None
    assert NoMatchPolicy.model_free().judge(Evidence(0.0, 0.0, 0.0, 0.0, 1.0, 0.0)) is None
    assert phrase_cover("left shift band forms", ["a left shift with band forms"]) == 1.0
    assert phrase_cover("warning signs of a stroke", ["signs of anaemia; warning"]) == 0.0


def _tiny_ranker(tmp_path) -> LearnedRanker:
    import json

    import lightgbm

    rng = np.random.default_rng(0)
    x = rng.random((400, len(FEATURES)))
    y = (x[:, FEATURES.index("dense")] > 0.7).astype(int)
    booster = lightgbm.train({"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5, "num_threads": 1}, lightgbm.Dataset(x, y, group=[20] * 20), 10)
    booster.save_model(str(tmp_path / "r.txt"))
    (tmp_path / "r.json").write_text(json.dumps({"features": list(FEATURES), "embedding_model": FakeEmbedder.name}))
    return LearnedRanker.load(tmp_path / "r.txt", tmp_path / "r.json")


def test_learned_ranker_orders_the_candidates(index, tmp_path):
    ranker = _tiny_ranker(tmp_path)
    service = SearchService(index, FakeEmbedder(), ranker=ranker, no_match=None)
    r = service.search("ferritin threshold for iron deficiency", 10)
    assert r.ranker == "learned" and len(r.hits) == 10 and [h.rank for h in r.hits] == list(range(1, 11))
    assert r.hits == sorted(r.hits, key=lambda h: -h.score)
    rrf = service.search("ferritin threshold for iron deficiency", 10, settings=RetrievalSettings(ranker="rrf"))
    assert rrf.ranker == "rrf"
    parsed = service.read_query("ferritin threshold")
    cands = service.candidates(parsed, service.embed_query(parsed.text), 20)
    assert cands.features.shape == (len(cands.ids), len(FEATURES)) and np.isfinite(cands.features).all()


def test_ranker_card_must_list_the_features(tmp_path):
    import json

    ranker = _tiny_ranker(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps({"features": ["dense"], "embedding_model": "x"}))
    with pytest.raises(ValueError, match="train-ranker"):
        LearnedRanker.load(tmp_path / "r.txt", tmp_path / "r.json")
    assert ranker.describe()["features"] == list(FEATURES)


def test_api_says_no_match_with_a_reason(tiny_corpus, tmp_path):
    from fastapi.testclient import TestClient

    from medkb.settings import Settings
    from server.app import create_app

    root = tmp_path / "index"
    build_index([tiny_corpus], root, FakeEmbedder())
    app = create_app(Settings(index_dir=root, conversations_db=tmp_path / "c.sqlite"),
                     service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with TestClient(app) as client:
        body = client.get("/api/search", params={"q": "what is it?"}).json()
        assert body["results"] == [] and body["no_match"] == NO_CONTENT
        body = client.get("/api/search", params={"q": "ferritn"}).json()
        assert body["no_match"] is None and body["searched_for"] == "ferritin" and body["results"]
        answer = client.post("/api/ask", json={"question": "asdfgh qwerty"}).json()
        assert answer["key_points"] == [] and answer["no_match"] == NOTHING_KNOWN
        page = client.get("/", params={"q": "the"}).text
        assert NO_CONTENT.replace("'", "&#39;") in page or NO_CONTENT in page


def test_weak_evidence_gives_suggestions_gibberish_does_not(index):
    never = NoMatchPolicy(model="m", weights=(0.0,) * 6, bias=-10.0, threshold=0.5)
    service = SearchService(index, FakeEmbedder(), ranker=None, no_match=never)
    r = service.search("ferritin threshold", 5)
    assert r.hits == [] and r.no_match == WEAK_EVIDENCE and len(r.suggestions) == 3
    assert service.search("asdfgh qwerty", 5).suggestions == []


def test_posting_membership_is_np_isin():
    import numpy as np

    from retrieval.ranker import holds

    rng = np.random.default_rng(3)
    for _ in range(20):
        posting = np.unique(rng.integers(0, 500, rng.integers(0, 60)))
        ids = np.unique(rng.integers(0, 500, 40))
        assert (holds(ids, posting, 500) == np.isin(ids, posting)).all()


def test_suggestions_from_two_spellers_are_those_of_one_speller_holding_both():
    """The build's words and the drug names are two SymSpell dictionaries (the drug names are made
    once per process); their merged suggestions must be what one dictionary of all the words gives:
    the nearest distance only, a word in both counted once with its counts added, most frequent first."""
    from symspellpy import SymSpell, Verbosity

    from retrieval.query_understanding import closest_words

    index_words = {"ferritin": 50, "ferrous": 30, "anaemia": 40, "anemia": 45, "warfarin": 5}
    drug_words = {"warfarin": 1, "ferrixin": 1, "anemix": 1}

    def speller(words):
        s = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
        for w, c in words.items():
            s.create_dictionary_entry(w, c)
        return s

    both = speller(index_words)
    for w, c in drug_words.items():
        both.create_dictionary_entry(w, c)
    split = (speller(index_words), speller(drug_words))
    for typo, distance in [("ferritinn", 2), ("feritin", 1), ("warfarn", 1), ("anemiz", 1), ("ferrixn", 1), ("zzzzzz", 2)]:
        expected = [(s.term, s.count) for s in both.lookup(typo, Verbosity.CLOSEST, max_edit_distance=distance)]
        got = closest_words(typo, distance, split)
        assert got == [t for t, _ in sorted(expected, key=lambda e: (-e[1], e[0]))], typo
    assert closest_words("warfarn", 1, split) == ["warfarin"]  # in both: one suggestion

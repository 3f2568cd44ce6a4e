"""Sentence boundaries in clinical text: a hand-labelled set, the two failing cases
(01 unit full stop, 03 dotted initialism), and the span contract on random text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from indexer.articles import parse_article
from indexer.chunking import chunk_article, sentence_spans
from indexer.citations import CITATION_RE, find_citations

from fakes import FakeEmbedder
from paths import SHARED

DATA = Path(__file__).resolve().parent / "data" / "sentences.jsonl"
CASES = SHARED / "cases"
ROWS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_contract(text: str, spans: list[tuple[int, int]]) -> None:
    """Ordered, non-overlapping, trimmed spans that cover every non-space character; a
    sentence starts only after a space, never inside a citation bracket or a number."""
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text), f"spans out of order or empty: {spans}"
        assert not text[start].isspace() and not text[end - 1].isspace(), f"untrimmed span {text[start:end]!r}"
        assert not text[previous_end:start].strip(), f"text between sentences is lost: {text[previous_end:start]!r}"
        if start > 0 and previous_end > 0:
            assert text[start - 1].isspace(), f"a sentence starts inside a token: {text[start - 5:start + 5]!r}"
        previous_end = end
    assert not text[previous_end:].strip(), "text after the last sentence is lost"
    for m in CITATION_RE.finditer(text):
        assert any(start <= m.start() and m.end() <= end for start, end in spans), f"citation {m.group()} cut"


def test_the_labelled_set_is_large_enough():
    assert len(ROWS) >= 60 and sum(not row.get("known_failure") for row in ROWS) >= 120
    assert len({row["text"] for row in ROWS}) == len(ROWS), "each passage once"


def labelled(row):
    """A passage of the set; one the segmenter is known to get wrong is a strict xfail, so that
    it is noticed when a new version of the segmenter gets it right."""
    marks = [pytest.mark.xfail(reason=row["known_failure"], strict=True)] if row.get("known_failure") else []
    return pytest.param(row, id=row["note"], marks=marks)


@pytest.mark.parametrize("row", [labelled(row) for row in ROWS])
def test_sentence_boundaries(row):
    text = row["text"]
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == row["sentences"]
    check_contract(text, spans)


# Pieces that put full stops, units, initialisms, decimals, citations, brackets and line breaks
# next to each other in every order.
PIECES = [
    "iron", "Ferritin", "dose", "the", "U.K.", "U.S.", "e.g.", "i.e.", "vs.", "et al.", "Dr.", "Fig. 2",
    "65 mg.", "8 g/dL.", "12 µg/L.", "1.5 mg/kg", "2-4 mg.", "vitamin K.", "B12.", "i.v.", "[1]", "[1, 3]",
    "[2-4]", "[ 2 ]", ".[3]", ". [4]", ".", "?", "!", "(", ")", "(see Fig. 3).", '"', "\u201cquoted.\u201d",
    "\n", "  ", "Next", "Then", "a", "30%", "0.5", "...", "[", "]", "[12", "3.]",
]


@pytest.mark.parametrize("seed", range(40))
def test_spans_cover_any_text_in_order(seed):
    rng = random.Random(seed)
    for _ in range(50):
        words = [rng.choice(PIECES) for _ in range(rng.randint(0, 30))]
        text = "".join(w + rng.choice([" ", " ", "", "  ", "\n"]) for w in words)
        check_contract(text, sentence_spans(text))


def test_no_sentence_splits_a_decimal_or_a_citation():
    text = "Give 1.5 mg/kg then 0.75 mg/kg [1, 3]. Review [2-4]. Stop."
    sentences = [text[s:e] for s, e in sentence_spans(text)]
    assert sentences == ["Give 1.5 mg/kg then 0.75 mg/kg [1, 3].", "Review [2-4].", "Stop."]


def test_blank_text_has_no_sentences():
    assert sentence_spans("") == [] and sentence_spans(" \n\t ") == []


# ------------------------------------------------------------------ cases 01 and 03


def case_article(folder: str, name: str):
    path = CASES / folder / name
    if not path.exists():
        pytest.skip(f"{path} is not here: the shared cases folder sits beside the repository (../shared)")
    return parse_article(path)


def units(article) -> list[str]:
    """What a reader is shown as one sentence: the sentences of every chunk's text."""
    chunks = chunk_article(article, FakeEmbedder().count_tokens)
    assert chunks
    return [c.text[s:e] for c in chunks for s, e in sentence_spans(c.text)]


def cited(sentence: str) -> set[int]:
    return {n for span in find_citations(sentence) for n in span.numbers}


def test_case_01_a_full_stop_after_a_unit_ends_the_sentence():
    article = case_article("01-unit-full-stop", "oral-iron-dosing-test.md")
    (block,) = [b for s in article.sections for b in s.blocks]
    assert [block.text[s:e] for s, e in sentence_spans(block.text)] == [
        "A common adult starting dose of elemental iron is 65 mg.",
        "Taking iron on alternate days improves fractional absorption compared with daily doses [2].",
        "Transfusion is seldom needed when hemoglobin stays above 8 g/dL.",
        "A ferritin of 12 µg/L.",
        "Oral iron is the first-line treatment in stable outpatients [1].",
    ]
    sentences = units(article)
    uncited = ["65 mg", "8 g/dL", "12 µg/L"]
    for sentence in sentences:
        if cited(sentence):
            for dose in uncited:
                assert dose not in sentence, f"{dose!r} shown under {sorted(cited(sentence))}: {sentence!r}"
    assert any(s.startswith("Taking iron on alternate days") and cited(s) == {2} for s in sentences)
    assert any(s.startswith("Oral iron is the first-line") and cited(s) == {1} for s in sentences)


def test_case_03_a_dotted_initialism_does_not_end_the_sentence():
    article = case_article("03-multi-period", "ferritin-uk-threshold-test.md")
    (block,) = [b for s in article.sections for b in s.blocks]
    whole = "In the U.K. NICE-style guidance uses a ferritin cut-off of 30 µg/L to define iron deficiency in adults [1]."
    assert [block.text[s:e] for s, e in sentence_spans(block.text)] == [whole]
    assert [s for s in units(article) if cited(s) == {1}] == [whole], "the key point keeps 'In the U.K.'"


@pytest.mark.parametrize("initialism", ["U.K.", "U.S.", "E.U.", "U.S.A.", "N.H.S.", "Ph.D.", "M.D."])
def test_dotted_initialisms_not_in_any_list_do_not_end_a_sentence(initialism):
    text = f"Guidance from the {initialism} Working Group sets a cut-off of 30 µg/L [1]. It is widely used."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        f"Guidance from the {initialism} Working Group sets a cut-off of 30 µg/L [1].",
        "It is widely used.",
    ]


@pytest.mark.parametrize("unit", ["mg", "mcg", "g/dL", "µg/L", "mL", "mmol/L", "IU", "mg/kg/h", "ng/mL", "mmHg", "%"])
def test_a_full_stop_after_any_unit_ends_the_sentence_before_a_capital(unit):
    text = f"The usual level is 5 {unit}. Higher values need review [2]."
    assert [text[s:e] for s, e in sentence_spans(text)] == [f"The usual level is 5 {unit}.", "Higher values need review [2]."]

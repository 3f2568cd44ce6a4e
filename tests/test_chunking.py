"""Chunk invariants: never cut a sentence, never part a citation from its sentence,
never cross a section, stay within the budget unless one sentence alone exceeds it."""

import datetime as dt
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.articles import parse_article
from indexer.chunking import ChunkerSettings, chunk_article, sentence_spans
from indexer.citations import find_citations

from fakes import FakeEmbedder
from sample_articles import article

WORDS = ["iron", "ferritin", "anaemia", "marrow", "heme", "lead", "transferrin", "saturation", "e.g.", "vs.", "1.5", "mg/dL", "Dr.", "i.e.", "(MCV)", "et al."]
counter = FakeEmbedder().count_tokens


def test_sentence_spans_respect_abbreviations_numbers_and_trailing_citations():
    text = "Give 1.5 mg daily, e.g. with food [1]. Dr. Smith et al. agree. It ends here. [2] Next one!"
    sentences = [text[s:e].strip() for s, e in sentence_spans(text)]
    assert sentences == ["Give 1.5 mg daily, e.g. with food [1].", "Dr. Smith et al. agree.", "It ends here. [2]", "Next one!"]


sentence = st.builds(
    lambda words, cites, end: " ".join(words).capitalize() + (f" [{', '.join(map(str, sorted(set(cites))))}]" if cites else "") + end,
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=40),
    st.lists(st.integers(1, 3), max_size=2),
    st.sampled_from([".", "!", "?"]),
)
block = st.tuples(st.sampled_from(["para", "item"]), st.lists(sentence, min_size=1, max_size=5))
section = st.lists(block, min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections=st.lists(section, min_size=1, max_size=4), max_tokens=st.integers(30, 160))
def test_chunk_invariants(sections, max_tokens):
    body_lines, expected = [], []  # expected: (section heading, sentence)
    for i, blocks in enumerate(sections):
        heading = f"Section {i}"
        body_lines.append(f"## {heading}\n")
        for kind, sentences in blocks:
            text = " ".join(sentences)
            body_lines.append(f"- {text}\n" if kind == "item" else f"{text}\n")
            expected.extend((heading, s) for s in sentences)
    body_lines.append("## Sources\n\nCited here so every reference is used [1, 2, 3].\n")
    refs = "".join(f"- id: {n}\n  kind: research\n  title: T{n}\n  source: S\n" for n in (1, 2, 3))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.md"
        path.write_text(article("a", "Q?", "\n".join(body_lines), references=refs))
        art = parse_article(path)
    chunker = ChunkerSettings(max_tokens=max_tokens, min_body_tokens=20)
    chunks = chunk_article(art, counter, chunker)
    again = chunk_article(art, counter, chunker)
    assert [c.id for c in chunks] == [c.id for c in again], "chunk ids are stable"
    assert len({c.id for c in chunks}) == len(chunks)

    for heading, s in expected:
        holders = [c for c in chunks if s in c.text]
        assert holders, f"sentence lost or cut: {s!r}"
        assert any(c.section_path[-1] == heading for c in holders), "sentence moved to another section"
    for c in chunks:
        cited_in_text = sorted({n for span in find_citations(c.text) for n in span.numbers})
        assert c.citations == cited_in_text, "a chunk's citations are exactly those in its text"
        assert [r.id for r in c.references] == c.citations
        prefix = counter([chunker.context_template.format(title=art.title, section=" > ".join(c.section_path), text="")])[0]
        budget = max(chunker.min_body_tokens, max_tokens - prefix)
        assert c.token_count <= budget or c.oversized
        if c.oversized:
            assert len(sentence_spans(c.text)) >= 1 and counter([c.text])[0] > budget
        assert c.review_status == "under_review" and c.article_title == "Q?" and c.last_updated == dt.date(2025, 4, 5)


def test_chunks_carry_article_metadata_and_evidence_kinds(tmp_path):
    from sample_articles import MICRO_BODY

    path = tmp_path / "m.md"
    path.write_text(article("micro", "What causes microcytosis?", MICRO_BODY))
    chunks = chunk_article(parse_article(path), counter)
    by_section = {tuple(c.section_path): c for c in chunks}
    causes = by_section[("From the Guidelines", "Causes of Chronic Microcytosis")]
    assert causes.citations == [1, 2]
    assert {r.id: r.kind for r in causes.references} == {1: "guideline", 2: "research"}
    assert causes.evidence_kinds == ["guideline", "research"]
    assert causes.section_id == "micro#from-the-guidelines-causes-of-chronic-microcytosis"
    assert causes.embed_text.startswith("What causes microcytosis?\nFrom the Guidelines > Causes of Chronic Microcytosis\n")
    assert all(c.article_id == "micro" and c.audience == "clinician" for c in chunks)

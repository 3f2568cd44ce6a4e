"""The corpus writer: any source text comes back from the corpus parser exactly, never as markup."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from indexer.articles import parse_article
from indexer.importers import ImporterError, run_import
from indexer.importers.corpus_writer import (
    BulletList,
    ImportedArticle,
    ImportedSection,
    Paragraph,
    Reference,
    clean_text,
    render_article,
    render_inline,
    safe_file_stem,
)

MARKDOWN_CHARS = list("#*-+_[]<>`\\&;!=~|().:0123456789 \n\tabcAB")
source_text = st.text(alphabet=st.sampled_from(MARKDOWN_CHARS) | st.characters(), min_size=1, max_size=60).filter(
    lambda s: clean_text(s) != ""
)


def round_trip(heading: str, paragraph: str, item: str):
    article = ImportedArticle(
        id="t",
        title="T",
        last_updated=None,
        audience="both",
        sections=[
            ImportedSection(
                heading=heading,
                level=2,
                blocks=[Paragraph(paragraph, cites=(1,)), BulletList([Paragraph(item)])],
            )
        ],
        references=[Reference(id=1, kind="research", title="R", source="S")],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.md"
        path.write_text(render_article(article, "submitted"), encoding="utf-8")
        return parse_article(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heading=source_text, paragraph=source_text, item=source_text)
@example(heading="# Title #", paragraph="# not a heading [1] either.", item="- not a nested item")
@example(heading="1. Numbered", paragraph="1. not a list, see [2-4].", item="2) nor this")
@example(heading="<b>bold</b>", paragraph="<div>not html</div> &amp; not an entity", item="> not a quote")
@example(heading="***", paragraph="===", item="`not code` and *not emphasis* and _this_")
@example(heading="Ends with a backslash \\", paragraph="A backslash at the end \\", item="[1]")
@example(heading="x", paragraph="    indented text is not code", item="+ plus")
@example(heading="x", paragraph="0.", item="y")  # an escaped final period: the citation goes before the escape
def test_any_text_reads_back_unchanged_and_never_as_markup(heading, paragraph, item):
    parsed = round_trip(heading, paragraph, item)
    (section,) = parsed.sections
    assert section.path == (clean_text(heading),)
    para, bullet = section.blocks
    assert (para.kind, bullet.kind) == ("paragraph", "list_item")
    # the only citation is the one the writer placed; the text around it is the source text
    (citation,) = para.citations
    assert citation.numbers == (1,)
    assert para.text[: citation.start].rstrip() + para.text[citation.end :] == _without_space_before_final_punct(clean_text(paragraph))
    assert bullet.text == clean_text(item) and bullet.citations == []


def _without_space_before_final_punct(text: str) -> str:
    # "ends ." is written "ends [1]." (the citation takes the place of the space)
    return re.sub(r"\s+(?=[.!?:;\u2026]+[\"'\u201d\u2019)]*$)", "", text)


def test_citation_goes_inside_the_sentence_before_its_period():
    assert render_inline(Paragraph("Iron deficiency is common.", cites=(2, 3))) == "Iron deficiency is common [2, 3]."
    assert render_inline(Paragraph("Ranges are compressed", cites=(2, 3, 4))) == "Ranges are compressed [2-4]"
    assert (
        render_inline(Paragraph.from_sentences([("First one.", (1,)), ("Second one.", (2,))]))
        == "First one [1]. Second one [2]."
    )


def test_file_stems_are_safe_and_distinct():
    assert safe_file_stem("pubmed-123") == "pubmed-123"
    assert safe_file_stem("MED-10") != safe_file_stem("med-10")
    assert safe_file_stem("a/b") != safe_file_stem("a:b")
    assert safe_file_stem("readme") != "readme"
    for stem in (safe_file_stem(s) for s in ("../../etc", "a b", "", "\u00e9", "x" * 500)):
        assert stem and "/" not in stem and len(stem) <= 100 and stem == stem.lower()


def test_run_import_refuses_what_it_cannot_start(tmp_path: Path):
    with pytest.raises(ImporterError, match="unknown import format"):
        run_import("docx", tmp_path, tmp_path / "out")
    with pytest.raises(ImporterError, match="unknown review status"):
        run_import("beir", tmp_path, tmp_path / "out", status="published")
    with pytest.raises(ImporterError, match="source not found"):
        run_import("beir", tmp_path / "missing.jsonl", tmp_path / "out")


def test_an_import_cannot_approve(tmp_path: Path):
    """Only a clinician's review approves: an import asked to write 'approved' writes nothing."""
    source = tmp_path / "corpus.jsonl"
    source.write_text('{"_id": "d1", "title": "Ferritin", "text": "Ferritin reflects iron stores."}\n', encoding="utf-8")
    with pytest.raises(ImporterError, match="only a clinician's review approves"):
        run_import("beir", source, tmp_path / "out", status="approved")
    assert not (tmp_path / "out").exists()

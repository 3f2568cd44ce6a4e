"""The article cases in shared/cases (04, 05, 06, 06b, 20-24), each read from its own file.

The whole kind of fault behind each case is covered with articles written inside the
tests in test_article_markdown.py and test_front_matter.py.
"""

import shutil
import time
from pathlib import Path

import pytest

from indexer import index_store
from indexer.articles import ArticleInvalid, load_corpus, parse_article
from indexer.build import BuildFailed, build_index
from indexer.chunking import chunk_article

from fakes import FakeEmbedder
from sample_articles import MICRO_BODY, article

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CASES = SHARED / "cases"

pytestmark = pytest.mark.skipif(not CASES.is_dir(), reason=f"the shared cases folder {CASES} is not present (it sits beside the repository)")


def case_file(folder: str) -> Path:
    [path] = sorted((CASES / folder).glob("*.md"))
    return path


def problems_of(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(ArticleInvalid) as info:
        parse_article(path)
    assert all(p.file == str(path) for p in info.value.problems)
    return [(p.line, p.message) for p in info.value.problems]


def line(path: Path, number: int) -> str:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[number - 1]


def test_04_gfm_table_rows_are_indexed_with_headers_and_their_own_citations():
    path = case_file("04-gfm-table")
    a = parse_article(path)
    [section] = a.sections
    rows = [b for b in section.blocks if b.kind == "table_row"]
    assert [b.text for b in rows] == [
        "Drug: Apixaban; Low bleeding risk: 24 h [1]; High bleeding risk: 48 h [1]",
        "Drug: Dabigatran, CrCl 50-79; Low bleeding risk: 36 h [2]; High bleeding risk: 72 h [2]",
    ]
    for row in rows:
        assert row.text.startswith("Drug: " + line(path, row.line).split("|")[1].strip() + ";")
        for c in row.citations:
            assert row.text[c.start : c.end] in line(path, c.line)
    assert [[c.numbers for c in r.citations] for r in rows] == [[(1,), (1,)], [(2,), (2,)]]
    chunks = chunk_article(a, FakeEmbedder().count_tokens)
    for row in rows:  # each row whole in a chunk, with its citations
        [holder] = [c for c in chunks if row.text in c.text]
        assert {n for cite in row.citations for n in cite.numbers} <= set(holder.citations)


def test_05_html_table_rows_keep_their_text_and_citations():
    path = case_file("05-html-table")
    a = parse_article(path)
    blocks = a.sections[0].blocks
    rows = [b for b in blocks if b.kind == "table_row"]
    assert [b.text for b in rows] == [
        "Edoxaban before a high bleeding risk procedure; stop 48 hours before [1]",
        "Dabigatran when creatinine clearance is 30 to 49; stop 96 hours before [2]",
    ]
    for row in rows:
        assert "Edoxaban" in line(path, row.line) or "Dabigatran" in line(path, row.line)
        [c] = row.citations
        assert row.text[c.start : c.end] in line(path, c.line)
    assert a.cited_numbers() == {1, 2}


def test_06_reference_definition_used_by_a_citation_is_that_citation():
    path = case_file("06-link-refdef")
    a = parse_article(path)
    [block] = a.sections[0].blocks
    assert block.text.endswith("without inflammation [1].")
    [c] = block.citations
    assert c.numbers == (1,) and "[1]" in line(path, c.line)


def test_06b_number_only_link_label_is_a_citation():
    path = case_file("06b-linked-citation")
    a = parse_article(path)
    [block] = a.sections[0].blocks
    assert block.text.endswith("haemophagocytosis [2].") and "https://" not in block.text
    assert [c.numbers for c in block.citations] == [(1,), (2,)]
    assert a.cited_numbers() == {1, 2}


def test_20_reference_url_that_is_not_http_is_an_error_at_its_line():
    path = case_file("20-xss-reference-url")
    [(number, message)] = problems_of(path)
    assert "javascript:" in line(path, number) and line(path, number).strip().startswith("url:")
    assert "reference 1 url" in message and "not an http(s) URL" in message


def test_21_duplicated_front_matter_key_is_an_error_at_the_second():
    path = case_file("21-duplicate-key")
    [(number, message)] = problems_of(path)
    assert line(path, number) == "review_status: approved"
    assert "duplicate key 'review_status'" in message and "first on line 4" in message


def test_22_yaml_aliases_are_refused_and_the_rest_of_the_corpus_indexes(tmp_path):
    path = case_file("22-yaml-alias-bomb")
    started = time.perf_counter()
    problems = problems_of(path)
    assert time.perf_counter() - started < 5
    assert [n for n, _ in problems] == [7, 8]
    assert "anchor &a" in problems[0][1] and "alias *a" in problems[1][1]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(path, corpus / path.name)
    (corpus / "good.md").write_text(article("good", "What causes microcytosis?", MICRO_BODY))
    loaded = load_corpus([corpus])
    assert [a.id for a in loaded.articles] == ["good"]
    assert [Path(s).name for s in loaded.skipped] == [path.name]


def test_23_citation_range_past_the_references_is_an_error_at_its_line():
    path = case_file("23-range-bomb")
    [(number, message)] = problems_of(path)
    assert "[1-10000000]" in line(path, number)
    assert "runs past the references that exist" in message


def test_24_non_utf8_error_names_the_line_and_column_of_the_bad_byte():
    path = case_file("24-non-utf8")
    [(number, message)] = problems_of(path)
    raw_line = path.read_bytes().splitlines()[number - 1]
    assert b"\xe9" in raw_line and number == 16
    assert "line 16, column 3" in message and "e9" in message


def test_every_bad_case_is_skipped_and_reported_with_the_good_articles_indexed_unless_strict(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    bad = ["20-xss-reference-url", "21-duplicate-key", "22-yaml-alias-bomb", "23-range-bomb", "24-non-utf8"]
    good = ["04-gfm-table", "05-html-table", "06-link-refdef", "06b-linked-citation"]
    for folder in bad + good:
        shutil.copy(case_file(folder), corpus / f"{folder}.md")
    root = tmp_path / "index"
    report = build_index([corpus], root, FakeEmbedder())
    assert report.articles == len(good)
    assert sorted(Path(s).stem for s in report.skipped) == bad
    assert {Path(p.file).stem for p in report.problems} == set(bad) and all(p.line > 1 for p in report.problems)
    published = index_store.current_dir(root)
    with pytest.raises(BuildFailed):
        build_index([corpus], root, FakeEmbedder(), strict=True)
    assert index_store.current_dir(root) == published

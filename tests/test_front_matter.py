"""Front matter is data: plain YAML only, each field of its type, every fault an error with
its line, and one bad article never stops the rest of a corpus."""

import time
from pathlib import Path

import pytest

import indexer.articles as articles
from indexer.articles import FRONT_MATTER_MAX_BYTES, ArticleInvalid, load_corpus, parse_article

from sample_articles import MICRO_BODY, article

REFS = "- id: 1\n  kind: research\n  title: T\n  source: S\n"
BODY = "## Part\n\nCited [1].\n"


def write(tmp_path: Path, text: str, name: str = "a.md") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def front(fields: str, references: str = REFS, body: str = BODY) -> str:
    refs = "".join("  " + line + "\n" for line in references.splitlines())
    return f"---\n{fields}references:\n{refs}---\n\n{body}"


BASE = "id: a\ntitle: Q?\nreview_status: submitted\nlast_updated: 2025-01-01\n"


def problems_of(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(ArticleInvalid) as info:
        parse_article(path)
    assert all(p.file == str(path) for p in info.value.problems)
    return [(p.line, p.message) for p in info.value.problems]


def line_of(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if needle in text)


# ---------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize("fields,references,second,name", [
    (BASE + "review_status: approved\n", REFS, "review_status: approved", "review_status"),
    (BASE + "metadata:\n  source: a\n  source: b\n", REFS, "source: b", "metadata.source"),
    (BASE + "metadata:\n  nested:\n    - {x: 1, x: 2}\n", REFS, "{x: 1, x: 2}", "metadata.nested[0].x"),
    (BASE, REFS + "  title: Again\n", "title: Again", "references[0].title"),
])
def test_duplicate_keys_at_any_level_are_errors_at_their_line(tmp_path, fields, references, second, name):
    path = write(tmp_path, front(fields, references))
    found = problems_of(path)
    assert any(n == line_of(path, second) and f"duplicate key '{name}'" in m for n, m in found), found


# ---------------------------------------------------------------- aliases, tags, size, depth


def test_aliases_and_anchors_are_refused_with_their_line(tmp_path):
    path = write(tmp_path, front(BASE + "metadata:\n  a: &x [1, 2]\n  b: *x\n"))
    assert problems_of(path) == [
        (line_of(path, "&x"), "YAML anchor &x is not allowed in front matter"),
        (line_of(path, "*x"), "YAML alias *x is not allowed in front matter: write the value out"),
    ]


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    levels = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 12))
    path = write(tmp_path, front(BASE + "metadata:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + levels))
    started = time.perf_counter()
    found = problems_of(path)
    assert time.perf_counter() - started < 2
    assert found[0] == (line_of(path, "&l0"), "YAML anchor &l0 is not allowed in front matter (12 in all)")


def test_merge_keys_are_refused(tmp_path):
    path = write(tmp_path, front(BASE + "metadata:\n  a:\n    <<: {x: 1}\n    y: 2\n"))
    assert (line_of(path, "<<"), "YAML merge keys (<<) are not allowed in front matter: write the keys out") in problems_of(path)


@pytest.mark.parametrize("value", ["!!binary aGVsbG8=", "!!python/object/apply:os.system [ls]", "!!set {a, b}", "!custom x"])
def test_tags_other_than_plain_data_are_refused(tmp_path, value):
    path = write(tmp_path, front(BASE + f"metadata:\n  x: {value}\n"))
    [(n, m)] = problems_of(path)
    assert n == line_of(path, "x: !") and "is not allowed in front matter" in m


def test_a_control_character_in_front_matter_is_an_error_at_its_line(tmp_path):
    path = write(tmp_path, front(BASE + "specialty: haema\x07tology\n"))
    [(n, m)] = problems_of(path)
    assert n == line_of(path, "specialty:") and "U+0007 is not allowed" in m


def test_front_matter_has_a_size_limit(tmp_path):
    path = write(tmp_path, front(BASE + "metadata:\n  notes: '" + "x" * FRONT_MATTER_MAX_BYTES + "'\n"))
    [(n, m)] = problems_of(path)
    assert n == 1 and f"the limit is {FRONT_MATTER_MAX_BYTES}" in m


@pytest.mark.parametrize("nested", [
    "[" * 10_000 + "]" * 10_000,  # flow style
    "\n    " + "- " * 10_000 + "x",  # block style, one line
    "\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(200)) + "  " * 202 + "x",
])
def test_ten_thousand_nested_lists_in_metadata_are_an_error_not_a_crash(tmp_path, nested):
    path = write(tmp_path, front(BASE + f"metadata:\n  deep: {nested}\n"))
    started = time.perf_counter()
    [(n, m)] = problems_of(path)
    assert "nests more than" in m and line_of(path, "deep:") <= n
    assert time.perf_counter() - started < 5


def test_load_corpus_survives_a_recursion_error_in_one_article(tmp_path, monkeypatch):
    write(tmp_path, article("good", "Q1?", MICRO_BODY), "good.md")
    write(tmp_path, article("bad", "Q2?", MICRO_BODY + "\nTRIGGER\n"), "bad.md")
    original = articles._parse_body

    def exploding(source, body):
        if "TRIGGER" in source:
            raise RecursionError("maximum recursion depth exceeded")
        return original(source, body)

    monkeypatch.setattr(articles, "_parse_body", exploding)
    loaded = load_corpus([tmp_path])
    assert [a.id for a in loaded.articles] == ["good"]
    [problem] = loaded.problems
    assert problem.file.endswith("bad.md") and "nested too deeply" in problem.message


def test_load_corpus_reports_any_unexpected_failure_in_one_article(tmp_path, monkeypatch):
    write(tmp_path, article("good", "Q1?", MICRO_BODY), "good.md")
    write(tmp_path, article("bad", "Q2?", MICRO_BODY), "bad.md")
    original = articles.parse_article

    def flaky(path, display_name=None, data=None):
        if Path(path).name == "bad.md":
            raise MemoryError("out of memory")
        return original(path, display_name, data)

    monkeypatch.setattr(articles, "parse_article", flaky)
    loaded = load_corpus([tmp_path])
    assert [a.id for a in loaded.articles] == ["good"] and [Path(s).name for s in loaded.skipped] == ["bad.md"]
    assert "MemoryError" in loaded.problems[0].message


# ---------------------------------------------------------------- types


@pytest.mark.parametrize("fields,references,needle,message", [
    (BASE.replace("id: a", "id: [a, b]"), REFS, "id:", "'id' must be text, not a list"),
    (BASE.replace("title: Q?", "title: {text: Q}"), REFS, "title:", "'title' must be text, not a mapping"),
    (BASE.replace("review_status: submitted", "review_status: [approved]"), REFS, "review_status:", "'review_status' must be text, not a list"),
    (BASE.replace("last_updated: 2025-01-01", "last_updated: [2025-01-01]"), REFS, "last_updated:", "'last_updated' must be text, not a list"),
    (BASE + "audience: [clinician]\n", REFS, "audience:", "'audience' must be text, not a list"),
    (BASE + "specialty: {a: b}\n", REFS, "specialty:", "'specialty' must be text, not a mapping"),
    (BASE + "related_questions: {q: a}\n", REFS, "related_questions:", "related_questions must be a list of questions"),
    (BASE + "related_questions: [[a]]\n", REFS, "related_questions:", "related_questions must be a list of questions"),
    (BASE + "unresolved_references: [two]\n", REFS, "unresolved_references:", "unresolved_references must be a list of reference numbers"),
    (BASE + "metadata: [a]\n", REFS, "metadata:", "metadata must be a mapping"),
    (BASE, REFS.replace("title: T", "title: [T]"), "title: [T]", "'reference 1 title' must be text, not a list"),
    (BASE, REFS.replace("kind: research", "kind: {a: b}"), "kind: {", "'reference 1 kind' must be text, not a mapping"),
    (BASE, REFS + "  url: [https://example.org]\n", "url: [", "'reference 1 url' must be text, not a list"),
    (BASE, REFS + "  authors: {a: b}\n", "authors:", "reference 1 authors must be a name or a list of names"),
    (BASE, REFS.replace("id: 1", "id: [1]"), "id: [1]", "reference id must be a positive whole number, got [1]"),
    (BASE, REFS + "  year: '2020'\n", "year:", "reference 1 has a bad year '2020'"),
])
def test_fields_of_the_wrong_type_are_errors_naming_the_field(tmp_path, fields, references, needle, message):
    path = write(tmp_path, front(fields, references))
    found = problems_of(path)
    assert (line_of(path, needle), message) in found, found
    assert not any("missing required field" in m for _, m in found), "a field of the wrong type is not also 'missing'"


def test_text_fields_are_kept_exactly_as_written(tmp_path):
    path = write(tmp_path, front(BASE.replace("id: a", "id: 0123").replace("title: Q?", "title: 2024"), REFS + "  pmid: 0012345\n  authors: Smith J\n"))
    a = parse_article(path)
    assert (a.id, a.title, a.references[1].pmid, a.references[1].authors) == ("0123", "2024", "0012345", ("Smith J",))


def test_yes_and_no_are_text_not_booleans(tmp_path):
    path = write(tmp_path, front(BASE.replace("review_status: submitted", "review_status: yes")))
    [(n, m)] = problems_of(path)
    assert n == 4 and "unknown review status 'yes'" in m


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize("url", [
    "javascript:alert(document.domain)", "JavaScript:alert(1)", " javascript:alert(1)", "data:text/html,<script>x</script>",
    "vbscript:msgbox", "ftp://example.org/a", "//example.org/a", "/relative/path", "https:no-host", "file:///etc/passwd",
])
def test_reference_url_that_is_not_http_is_an_error_at_its_line(tmp_path, url):
    path = write(tmp_path, front(BASE, REFS + f"  url: {url!r}\n"))
    [(n, m)] = problems_of(path)
    assert n == line_of(path, "url:") and "reference 1 url" in m and "not an http(s) URL" in m


@pytest.mark.parametrize("url", ["https://example.org/a", "http://example.org/a?b=1#c", "HTTPS://EXAMPLE.ORG"])
def test_http_reference_urls_are_fine(tmp_path, url):
    assert parse_article(write(tmp_path, front(BASE, REFS + f"  url: {url}\n"))).references[1].url == url


# ---------------------------------------------------------------- ranges and numbers


def test_a_citation_range_is_bounded_by_the_references_that_exist(tmp_path):
    path = write(tmp_path, front(BASE, body="## Part\n\nCited [1].\n\nA bomb [1-10000000] here.\n"))
    [(n, m)] = problems_of(path)
    assert n == line_of(path, "A bomb") and "the last reference is 1" in m


def test_a_range_in_an_article_without_references_is_an_error(tmp_path):
    path = write(tmp_path, f"---\n{BASE}---\n\nA range [1-3].\n")
    [(n, m)] = problems_of(path)
    assert n == line_of(path, "A range") and "the article lists no references" in m


def test_a_reference_with_a_bad_field_is_not_also_reported_as_uncited_or_missing(tmp_path):
    path = write(tmp_path, front(BASE, REFS + "  url: javascript:x\n"))
    assert [m for _, m in problems_of(path)] == ["reference 1 url 'javascript:x' is not an http(s) URL; only http:// and https:// links are allowed"]


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize("prefix,bad,line,column", [
    (b"", b"An\xe9mie [1].\n", 13, 3),
    (b"", b"\xc3\xa9t\xc3\xa9 puis \xff [1].\n", 13, 10),  # columns count characters, not bytes
    (b"title_note: caf\xe9\n", b"Text [1].\n", 2, 16),
])
def test_non_utf8_names_the_line_and_column_of_the_first_bad_byte(tmp_path, prefix, bad, line, column):
    text = front(BASE, body="").encode()
    text = text.replace(b"---\n", b"---\n" + prefix, 1) + bad
    path = tmp_path / "a.md"
    path.write_bytes(text)
    [(n, m)] = problems_of(path)
    assert n == line and f"line {line}, column {column}" in m


def test_front_matter_that_cannot_be_read_still_reports_the_body(tmp_path):
    path = write(tmp_path, "---\nid: a\ntitle: [unclosed\n---\n\nText <script>x</script> [1].\n")
    [(n1, m1), (n2, m2)] = problems_of(path)
    assert n1 in (3, 4) and "malformed front matter" in m1
    assert n2 == 6 and "<script>" in m2

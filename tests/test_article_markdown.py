"""The article body: every markdown construct is read (text and citations kept, each with
its line) or reported with its line; nothing is dropped without a word."""

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

import indexer.articles as articles
from indexer.articles import ArticleInvalid, parse_article
from indexer.chunking import ChunkerSettings, chunk_article

from fakes import FakeEmbedder
from sample_articles import article

ONE_REF = "- id: 1\n  kind: research\n  title: T\n  source: S\n  url: https://example.org/one\n"
TWO_REFS = ONE_REF + "- id: 2\n  kind: guideline\n  title: G\n  source: S\n"


def write(tmp_path: Path, body: str, references: str = ONE_REF, name: str = "a.md") -> Path:
    path = tmp_path / name
    # Bodies are written as given (no dedent) so that indentation means what it says.
    text = article("a", "Q?", "PLACEHOLDER", references=references).replace("PLACEHOLDER\n", body)
    path.write_text(text)
    return path


def blocks_of(path: Path):
    return [b for s in parse_article(path).sections for b in s.blocks]


def problems_of(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(ArticleInvalid) as info:
        parse_article(path)
    problems = info.value.problems
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    return [(p.line, p.message) for p in problems]


def line_no(path: Path, needle: str) -> int:
    [number] = [i for i, text in enumerate(path.read_text().splitlines(), start=1) if needle in text]
    return number


def assert_citations_point_into_text_and_file(path: Path, block) -> None:
    lines = path.read_text().splitlines()
    for c in block.citations:
        shown = block.text[c.start : c.end]
        assert shown.startswith("[") and shown.endswith("]")
        assert any(n in c.numbers for n in (1, 2))
        assert any(str(n) in lines[c.line - 1] for n in c.numbers), (c, lines[c.line - 1])


# ---------------------------------------------------------------- GFM tables


def test_gfm_table_rows_carry_headers_and_cell_citations(tmp_path):
    body = (
        "## Intervals\n\n"
        "| Drug | Low risk | High risk [2] |\n"
        "|:-----|:--------:|----------:|\n"
        "| Apixaban | 24 h [1] | 48 h |\n"
        "| Edoxaban \\| oral | | 48 h [1, 2] |\n"
        "| No citation here | 12 h | 24 h |\n"
    )
    path = write(tmp_path, body, TWO_REFS)
    rows = blocks_of(path)
    assert [b.kind for b in rows] == ["table_row"] * 3
    assert [b.text for b in rows] == [
        "Drug: Apixaban; Low risk: 24 h [1]; High risk [2]: 48 h",
        "Drug: Edoxaban | oral; High risk [2]: 48 h [1, 2]",  # the empty cell is left out
        "Drug: No citation here; Low risk: 12 h; High risk [2]: 24 h",
    ]
    assert [b.line for b in rows] == [line_no(path, "Apixaban"), line_no(path, "Edoxaban"), line_no(path, "No citation")]
    first = rows[0]
    assert [(first.text[c.start : c.end], c.numbers, c.line) for c in first.citations] == [
        ("[1]", (1,), line_no(path, "Apixaban")),
        ("[2]", (2,), line_no(path, "| Drug |")),  # a header's citation is repeated in each row, at its own line
    ]
    for row in rows:
        assert_citations_point_into_text_and_file(path, row)


def test_gfm_table_with_only_a_header_row_is_one_row(tmp_path):
    path = write(tmp_path, "| Dose [1] | Route |\n|---|---|\n")
    [row] = blocks_of(path)
    assert (row.kind, row.text, row.line) == ("table_row", "Dose [1]; Route", line_no(path, "| Dose"))


def test_gfm_table_inside_a_list_item_and_a_quote(tmp_path):
    body = "- Item [1]\n\n  | A | B |\n  |---|---|\n  | a | b [1] |\n\n> | Q | R |\n> |---|---|\n> | q | r [1] |\n"
    texts = [(b.kind, b.text) for b in blocks_of(write(tmp_path, body))]
    assert texts == [("list_item", "Item [1]"), ("table_row", "A: a; B: b [1]"), ("table_row", "Q: q; R: r [1]")]


def test_table_rows_are_kept_whole_in_chunks(tmp_path):
    rows = "".join(f"| Drug {i} | stop {i * 12} hours before surgery in most patients [1] | restart after {i} days [1] |\n" for i in range(1, 13))
    body = "## Intervals\n\nStopping intervals depend on the drug [1].\n\n| Drug | Stop | Restart |\n|---|---|---|\n" + rows
    a = parse_article(write(tmp_path, body))
    row_texts = [b.text for s in a.sections for b in s.blocks if b.kind == "table_row"]
    chunks = chunk_article(a, FakeEmbedder().count_tokens, ChunkerSettings(max_tokens=90, min_body_tokens=40))
    assert len(chunks) > 2
    for text in row_texts:
        holders = [c for c in chunks if text in c.text]
        assert len(holders) == 1, f"row split or lost: {text}"
        assert holders[0].citations == [1]


def test_a_table_row_longer_than_the_budget_alone_is_split_at_sentences(tmp_path):
    long_cell = " ".join(["Stop the drug two days before the procedure."] * 12)
    a = parse_article(write(tmp_path, f"| Drug | Advice |\n|---|---|\n| Apixaban | {long_cell} [1] |\n"))
    chunks = chunk_article(a, FakeEmbedder().count_tokens, ChunkerSettings(max_tokens=60, min_body_tokens=30))
    assert len(chunks) > 1 and chunks[-1].citations == [1]
    assert "".join(c.text for c in chunks).count("Stop the drug") == 12


# ---------------------------------------------------------------- raw HTML


def test_html_table_rows_use_th_headers_and_keep_citations(tmp_path):
    body = (
        "<table>\n"
        "<caption>Intervals [1]</caption>\n"
        "<thead><tr><th> Drug </th><th colspan=\"2\">\n  Stop\n</th></tr></thead>\n"
        "<tbody>\n"
        "<tr><th>Apixaban</th><td> 24 h </td><td>48 h [1]</td></tr>\n"
        "<tr><td>Dabigatran &amp; CKD</td><td><b>72 h</b></td><td>96 h<br>or more [2]</td></tr>\n"
        "<tr><td colspan=\"3\">Bridging is not needed [1]</td></tr>\n"
        "</tbody>\n"
        "</table>\n"
    )
    path = write(tmp_path, body, TWO_REFS)
    blocks = blocks_of(path)
    assert [(b.kind, b.text) for b in blocks] == [
        ("paragraph", "Intervals [1]"),
        ("table_row", "Drug: Apixaban; Stop: 24 h; Stop: 48 h [1]"),
        ("table_row", "Drug: Dabigatran & CKD; Stop: 72 h; Stop: 96 h or more [2]"),
        ("table_row", "Bridging is not needed [1]"),  # a cell spanning columns stands alone
    ]
    assert [b.line for b in blocks[1:]] == [line_no(path, "Apixaban"), line_no(path, "Dabigatran"), line_no(path, "Bridging")]
    for b in blocks:
        assert_citations_point_into_text_and_file(path, b)


def test_html_blocks_become_paragraphs_and_list_items(tmp_path):
    body = (
        "<div>\n<p>First <em>paragraph</em> [1].</p>\nLoose text in the div [1].\n"
        "<!-- a comment is not content -->\n"
        "<ul>\n<li>One [1]</li>\n<li>Two <a href=\"https://example.org/x\">linked</a>\n<ol><li>Inner [1]</li></ol></li>\n</ul>\n"
        "<p><img src=\"https://example.org/i.png\" alt=\"A chart of ferritin\"> shown [1]</p>\n</div>\n"
    )
    path = write(tmp_path, body)
    blocks = blocks_of(path)
    assert [(b.kind, b.text) for b in blocks] == [
        ("paragraph", "First paragraph [1]."),
        ("paragraph", "Loose text in the div [1]."),
        ("list_item", "One [1]"),
        ("list_item", "Two linked"),
        ("list_item", "Inner [1]"),
        ("paragraph", "A chart of ferritin shown [1]"),
    ]
    assert blocks[2].line == line_no(path, "One [1]") and blocks[4].line == line_no(path, "Inner")
    for b in blocks:
        assert_citations_point_into_text_and_file(path, b)


@pytest.mark.parametrize("html,needle,message", [
    ("<div>Text [1]\n<script>alert(1)</script>\n</div>\n", "<script>", "<script> is not allowed"),
    ("<style>p { color: red }</style>\n\nText [1].\n", "<style>", "<style> is not allowed"),
    ("<iframe src=\"https://example.org\"></iframe>\n\nText [1].\n", "<iframe", "<iframe> is not allowed"),
    ("<h2>A heading in HTML</h2>\n\nText [1].\n", "<h2>", "HTML heading <h2> is not read as a section"),
    ("<custom-box>Boxed [1]</custom-box>\n", "<custom-box>", "<custom-box> is not allowed"),
    ("<p>See <a href=\"javascript:alert(1)\">this</a> [1]</p>\n", "javascript", "not an http(s) URL"),
    ("<p><img src=\"data:image/png;base64,AAAA\" alt=\"x\"> [1]</p>\n", "data:", "not an http(s) URL"),
])
def test_html_that_cannot_be_read_is_an_error_at_its_line(tmp_path, html, needle, message):
    path = write(tmp_path, html)
    found = problems_of(path)
    assert any(message in m and n == line_no(path, needle) for n, m in found), found


@pytest.mark.parametrize("text,shown", [
    ("Iron <b>bold</b> and <span class=\"x\">spanned</span> [1].", "Iron bold and spanned [1]."),
    ("Line<br>break [1].", "Line break [1]."),
    ("Chart <img src=\"https://example.org/c.png\" alt=\"ferritin chart\"> here [1].", "Chart ferritin chart here [1]."),
    ("Note <!-- hidden note --> kept [1].", "Note kept [1]."),
    ("Sub <sub>2</sub> and <sup>3</sup> [1].", "Sub 2 and 3 [1]."),
])
def test_inline_html_keeps_its_text(tmp_path, text, shown):
    [block] = blocks_of(write(tmp_path, text + "\n"))
    assert block.text == shown


@pytest.mark.parametrize("text,message", [
    ("Run <script>alert(1)</script> now [1].", "<script> is not allowed"),
    ("Open <a href=\"javascript:alert(1)\">this</a> [1].", "not an http(s) URL"),
    ("A <![CDATA[ hidden ]]> section [1].", "is not read"),
])
def test_inline_html_that_cannot_be_read_is_an_error(tmp_path, text, message):
    path = write(tmp_path, "Intro [1].\n\n" + text + "\n")
    found = problems_of(path)
    assert [n for n, m in found if message in m] == [line_no(path, text[:12])], found


def test_html_text_an_html_parser_would_lose_is_reported(tmp_path, monkeypatch):
    # Were the HTML parser ever to drop text, the words of the source not found in the
    # blocks are reported instead of vanishing.
    original = articles._Html.children

    def forgetful(self, element, flat):
        if element.tag == "p":
            return
        original(self, element, flat)

    monkeypatch.setattr(articles._Html, "children", forgetful)
    path = write(tmp_path, "Intro [1].\n\n<div><p>Forgotten words</p></div>\n")
    assert (line_no(path, "Forgotten"), "HTML text not read: Forgotten words") in problems_of(path)


# ---------------------------------------------------------------- links and definitions


def test_number_only_links_are_citations(tmp_path):
    body = "Inline [1](https://example.org/one) and grouped [1, 2](https://example.org/g) and [plain text](https://example.org/p) [2].\n"
    no_urls = "- id: 1\n  kind: research\n  title: T\n  source: S\n" + TWO_REFS.split("url: https://example.org/one\n")[1]
    [block] = blocks_of(write(tmp_path, body, no_urls))
    assert block.text == "Inline [1] and grouped [1, 2] and plain text [2]."
    assert [c.numbers for c in block.citations] == [(1,), (1, 2), (2,)]


def test_html_links_on_reference_numbers_are_citations(tmp_path):
    body = "Inline <a href=\"https://example.org/one\">1</a>.\n\n<p>Block <a href=\"https://example.org/one\">1</a>.</p>\n"
    blocks = blocks_of(write(tmp_path, body))
    assert [(b.text, [c.numbers for c in b.citations]) for b in blocks] == [("Inline [1].", [(1,)]), ("Block [1].", [(1,)])]


def test_reference_definition_used_by_a_citation_resolves_to_the_front_matter(tmp_path):
    body = "Ferritin is low [1].\n\n[1]: https://example.org/one\n"
    path = write(tmp_path, body)
    [block] = blocks_of(path)
    assert block.text == "Ferritin is low [1]." and block.citations[0].numbers == (1,)


def test_unused_citation_shaped_definition_is_an_error_at_its_body_line(tmp_path):
    body = "Ferritin is low [1].\n\n[2]: https://example.org/two\n"
    path = write(tmp_path, body, TWO_REFS)
    found = problems_of(path)
    assert any(n == line_no(path, "[2]: https") and "reads like a reference list entry" in m for n, m in found), found
    assert all(n > 12 for n, m in found if "reference list entry" in m), "points at the body, not the front matter"


def test_other_definitions_unused_or_twice_are_errors(tmp_path):
    body = "Text [1] and [a link][used].\n\n[used]: https://example.org/u\n[unused]: https://example.org/x\n[used]: https://example.org/again\n"
    path = write(tmp_path, body)
    found = problems_of(path)
    assert (line_no(path, "[unused]:"), "link reference definition [unused] is never used by a link") in found
    assert any(n == line_no(path, "/again") and "defined twice" in m for n, m in found)
    assert not any(n == line_no(path, "[used]: https://example.org/u") for n, _ in found)


def test_a_citation_linked_to_another_url_than_its_reference_is_an_error(tmp_path):
    path = write(tmp_path, "Linked elsewhere [1](https://example.org/not-the-one).\n")
    [(n, m)] = problems_of(path)
    assert n == line_no(path, "Linked elsewhere") and "reference 1's url is https://example.org/one" in m


@pytest.mark.parametrize("link", [
    "[x](javascript:alert(1))", "[x](JAVASCRIPT:alert(1))", "[x](data:text/html;base64,AAAA)", "[x](vbscript:x)",
    "[x](ftp://example.org/f)", "[x](other-article.md)", "<mailto:someone@example.org>", "![img](file:///etc/passwd)",
])
def test_body_link_urls_must_be_http(tmp_path, link):
    path = write(tmp_path, f"Text [1] and {link} here.\n")
    found = problems_of(path)
    assert any("not an http(s) URL" in m and n == line_no(path, "Text [1]") for n, m in found), found


@pytest.mark.parametrize("link", ["[x](https://example.org/a)", "[x](http://example.org/a?b=c#d)", "<https://example.org>"])
def test_http_links_are_fine(tmp_path, link):
    [block] = blocks_of(write(tmp_path, f"Text [1] and {link} here.\n"))
    assert block.citations[0].numbers == (1,)


# ---------------------------------------------------------------- citation shapes in the body


@pytest.mark.parametrize("cite,message", [
    ("[1;2]", "separate reference numbers with commas"),
    ("[^1]", "footnote-style [^1]"),
    ("[1-10000000]", "runs past the references that exist"),
    ("[1-3]", "runs past the references that exist: the last reference is 2"),
    ("[3]", "citation [3] names no reference"),
    ("[1, 4]", "names no reference for 4"),
    ("[12345678901234567890]", "too large to exist"),
    ("[2-1]", "runs backwards"),
    ("[1 2]", "cannot read [1 2] as a citation"),
])
def test_unreadable_citations_are_errors_at_their_body_line(tmp_path, cite, message):
    path = write(tmp_path, f"Both cited [1, 2].\n\nSecond paragraph\nwith {cite} on its second line.\n", TWO_REFS)
    found = problems_of(path)
    assert any(message in m and n == line_no(path, f"with {cite}") for n, m in found), found


@pytest.mark.parametrize("cite,numbers", [("[1\u20132]", (1, 2)), ("[1\u20142]", (1, 2)), ("[1 - 2]", (1, 2)), ("[2,1]", (2, 1))])
def test_range_dashes(tmp_path, cite, numbers):
    [block] = blocks_of(write(tmp_path, f"Cited {cite}.\n", TWO_REFS))
    assert block.citations[0].numbers == numbers


def test_unresolved_references_bound_ranges_too(tmp_path):
    path = tmp_path / "a.md"
    path.write_text(article("a", "Q?", "Cited [1-3].\n", references=ONE_REF, extra="unresolved_references: [2, 3]\n"))
    [block] = blocks_of(path)
    assert block.citations[0].numbers == (1, 2, 3)


# ---------------------------------------------------------------- every block construct


BLOCK_SAMPLES = {
    # rule name -> (markdown, the word that must be kept, or None when it must be reported)
    "paragraph": ("Plain ALPHA text [1].\n", "ALPHA"),
    "heading": ("## BRAVO heading\n\nText [1].\n", "BRAVO"),
    "lheading": ("CHARLIE heading\n---------------\n\nText [1].\n", "CHARLIE"),
    "list": ("- DELTA item [1]\n\n1. ECHO item [1]\n", "DELTA"),
    "blockquote": ("> FOXTROT quoted [1]\n", "FOXTROT"),
    "hr": ("Text [1].\n\n***\n\nGOLF after a rule [1].\n", "GOLF"),
    "code": ("Text [1].\n\n    HOTEL indented code [1]\n", "HOTEL"),
    "fence": ("Text [1].\n\n```text\nINDIA fenced [1]\n```\n", "INDIA"),
    "table": ("| H | JULIET |\n|---|---|\n| a | b [1] |\n", "JULIET"),
    "html_block": ("<div>KILO in html [1]</div>\n", "KILO"),
    "reference": ("LIMA text [1].\n\n[9]: https://example.org/nine\n", None),
}


def test_block_samples_cover_every_block_rule_the_parser_enables():
    assert set(BLOCK_SAMPLES) == set(articles._MD.get_active_rules()["block"]), \
        "a block rule was enabled or added: say here how its text is kept or reported"


@pytest.mark.parametrize("rule", sorted(BLOCK_SAMPLES))
def test_every_block_construct_is_read_or_reported(tmp_path, rule):
    markdown, word = BLOCK_SAMPLES[rule]
    path = write(tmp_path, markdown)
    if word is None:
        found = problems_of(path)
        assert any(n == line_no(path, "[9]:") for n, _ in found), found
        return
    a = parse_article(path)
    texts = [b.text for s in a.sections for b in s.blocks] + [s.heading for s in a.sections]
    assert any(word in t for t in texts), texts
    for s in a.sections:
        for b in s.blocks:
            assert_citations_point_into_text_and_file(path, b)
            if word in b.text:
                assert b.citations, f"{rule}: its citation was lost"


INLINE_SAMPLES = {
    "text": "Plain ALPHA [1].",
    "newline": "Line BRAVO\nnext [1].",
    "escape": "Escaped \\[CHARLIE\\] [1].",
    "backticks": "Code `DELTA` [1].",
    "emphasis": "Some *ECHO* and **FOXTROT** [1].",
    "link": "A [GOLF](https://example.org) link [1].",
    "image": "An ![HOTEL](https://example.org/h.png) image [1].",
    "autolink": "Auto <https://example.org/INDIA> [1].",
    "html_inline": "Some <span>JULIET</span> [1].",
    "entity": "Entity &amp; KILO &#91;x&#93; [1].",
}


def test_inline_samples_cover_every_inline_rule():
    assert set(INLINE_SAMPLES) == set(articles._MD.get_active_rules()["inline"])


@pytest.mark.parametrize("rule", sorted(INLINE_SAMPLES))
def test_every_inline_construct_keeps_its_text(tmp_path, rule):
    [block] = blocks_of(write(tmp_path, INLINE_SAMPLES[rule] + "\n"))
    words = re.findall(r"[A-Z]{4,}", INLINE_SAMPLES[rule])
    assert words and all(w in block.text for w in words), (words, block.text)
    assert [c.numbers for c in block.citations] == [(1,)]


def test_a_block_token_the_parser_does_not_know_is_reported(tmp_path, monkeypatch):
    md = MarkdownIt("commonmark", {"inline_definitions": True}).enable("table").disable("text_join")

    def callout(state, start, end, silent):
        if not state.src[state.bMarks[start] + state.tShift[start] :].startswith("!!!"):
            return False
        if not silent:
            token = state.push("callout", "div", 0)
            token.map = [start, start + 1]
        state.line = start + 1
        return True

    md.block.ruler.before("paragraph", "callout", callout)
    monkeypatch.setattr(articles, "_MD", md)
    path = write(tmp_path, "Text [1].\n\n!!! warning: read me\n")
    assert (line_no(path, "!!!"), "markdown 'callout' is not read by medkb") in problems_of(path)


def test_content_nested_deeper_than_markdown_reads_is_reported(tmp_path):
    body = "Text [1].\n\n" + ">" * 40 + " deep quote [1]\n\n" + "- " * 30 + "deep item [1]\n"
    path = write(tmp_path, body)
    found = problems_of(path)
    assert [n for n, m in found if m.startswith("text not read")] == [line_no(path, "deep quote"), line_no(path, "deep item")]


def test_ten_thousand_nested_markdown_constructs_do_not_crash(tmp_path):
    for i, body in enumerate([
        ">" * 10_000 + " deep [1]\n",
        "- " * 10_000 + "deep [1]\n",
        "[" * 10_000 + "x [1]" + "]" * 10_000 + "\n",
        "*" * 10_000 + "x [1]" + "*" * 10_000 + "\n",
        "<div>" * 10_000 + "x [1]" + "</div>" * 10_000 + "\n",
    ]):
        path = write(tmp_path, "Text [1].\n\n" + body, name=f"deep{i}.md")
        try:
            parse_article(path)
        except ArticleInvalid as exc:
            assert all(p.line >= 1 for p in exc.problems)


def test_every_problem_in_the_body_and_front_matter_is_reported_at_once_sorted(tmp_path):
    body = "Text [1].\n\n<script>x</script>\n\nRange [1-99].\n\n[x](javascript:alert(1))\n"
    path = tmp_path / "a.md"
    path.write_text(article("a", "Q?", body, references=ONE_REF, status="approved-ish", extra="audience: nobody\n"))
    found = problems_of(path)
    messages = " | ".join(m for _, m in found)
    for needle in ("unknown review status", "duplicate key 'audience'", "<script>", "runs past", "javascript"):
        assert needle in messages

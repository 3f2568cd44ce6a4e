"""The article parser: structure, citation resolution, and every error naming file and line."""

from pathlib import Path

import pytest

from indexer.articles import ArticleInvalid, load_corpus, parse_article

from sample_articles import MICRO_BODY, TREAT_BODY, article


def write(tmp_path: Path, text: str, name: str = "a.md") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(ArticleInvalid) as info:
        parse_article(path)
    for p in info.value.problems:
        assert p.file == str(path)
    return [(p.line, p.message) for p in info.value.problems]


def test_parses_heading_tree_blocks_and_resolved_citations(tmp_path):
    path = write(tmp_path, article("micro", "What causes microcytosis?", MICRO_BODY))
    a = parse_article(path)
    assert a.id == "micro" and a.review_status == "under_review" and str(a.last_updated) == "2025-04-05"
    paths = [s.path for s in a.sections]
    assert paths == [
        ("From the Guidelines",),
        ("From the Guidelines", "Causes of Chronic Microcytosis"),
        ("From the Research",),
        ("From the Research", "Evaluation"),
    ]
    causes = a.sections[1]
    assert [b.kind for b in causes.blocks] == ["list_item", "list_item"]
    assert causes.blocks[1].citations[0].numbers == (1, 2)
    assert a.cited_numbers() == {1, 2}
    assert a.references[2].pmid == "12345" and a.references[1].kind == "guideline"
    # the line of a citation is the line of the file it is on
    lines = path.read_text().splitlines()
    cite = causes.blocks[0].citations[0]
    assert "Sideroblastic" in lines[cite.line - 1]


def test_escaped_brackets_are_text_not_citations(tmp_path):
    body = "## Part\n\nA trial named \\[7\\] is not a citation [1, 2].\n"
    a = parse_article(write(tmp_path, article("e", "Escapes?", body)))
    block = a.sections[0].blocks[0]
    assert "[7]" in block.text
    assert [c.numbers for c in block.citations] == [(1, 2)]


def test_unresolved_citation_names_file_and_line(tmp_path):
    body = MICRO_BODY.replace("heme synthesis [1].", "heme synthesis [9].")
    path = write(tmp_path, article("m", "Q?", body))
    [(line, message)] = problems_of(path)
    assert "citation [9] names no reference" in message
    assert "[9]" in path.read_text().splitlines()[line - 1]


def test_reference_never_cited(tmp_path):
    body = "## Part\n\nOnly the first is cited [1].\n"
    path = write(tmp_path, article("m", "Q?", body))
    [(line, message)] = problems_of(path)
    assert message == "reference 2 is never cited"
    assert path.read_text().splitlines()[line - 1].strip() == "- id: 2"


def test_unknown_review_status(tmp_path):
    path = write(tmp_path, article("m", "Q?", MICRO_BODY, status="reviewed"))
    [(line, message)] = problems_of(path)
    assert "unknown review status 'reviewed'" in message
    assert path.read_text().splitlines()[line - 1].startswith("review_status:")


@pytest.mark.parametrize("field", ["id", "title", "review_status", "last_updated"])
def test_missing_required_field(tmp_path, field):
    text = "\n".join(line for line in article("m", "Q?", MICRO_BODY).splitlines() if not line.startswith(f"{field}:")) + "\n"
    messages = [m for _, m in problems_of(write(tmp_path, text))]
    assert f"missing required field '{field}'" in messages


def test_bad_date(tmp_path):
    path = write(tmp_path, article("m", "Q?", MICRO_BODY, date="2025-13-45"))
    [(line, message)] = problems_of(path)
    assert "bad date '2025-13-45'" in message and line == 5


def test_unknown_date_is_allowed_explicitly(tmp_path):
    a = parse_article(write(tmp_path, article("m", "Q?", MICRO_BODY, date="unknown")))
    assert a.last_updated is None


@pytest.mark.parametrize("text,needle", [
    ("no front matter\n", "must start with a '---' line"),
    ("---\nid: x\ntitle: unterminated\n", "no closing '---' line"),
    ("---\nid: x\ntitle: [unclosed\n---\n\nbody [1]\n", "malformed front matter"),
    ("---\n- just\n- a list\n---\n\nbody\n", "expected 'key: value' lines"),
])
def test_malformed_front_matter(tmp_path, text, needle):
    [(line, message)] = problems_of(write(tmp_path, text))
    assert needle in message and line >= 1


def test_yaml_error_points_at_its_line(tmp_path):
    text = article("m", "Q?", MICRO_BODY).replace("audience: clinician", "audience: [clinician")
    [(line, message)] = problems_of(write(tmp_path, text))
    assert "malformed front matter" in message and 6 <= line <= 9


def test_declared_unresolved_references_are_kept(tmp_path):
    body = "## Part\n\nCited and listed [1]. Cited but not listed by the source [3].\n"
    refs = "- id: 1\n  kind: research\n  title: T\n  source: S\n"
    a = parse_article(write(tmp_path, article("m", "Q?", body, references=refs, extra="unresolved_references: [3]\n")))
    assert a.unresolved_references == (3,)
    assert [c.numbers for c in a.sections[0].blocks[0].citations] == [(1,), (3,)]


def test_every_problem_is_reported_at_once(tmp_path):
    body = MICRO_BODY.replace("[2].", "[8].")
    path = write(tmp_path, article("m", "Q?", body, status="done"))
    messages = " | ".join(m for _, m in problems_of(path))
    assert "unknown review status" in messages and "citation [8]" in messages


def test_load_corpus_skips_bad_and_duplicate_articles_and_keeps_the_rest(tmp_path):
    write(tmp_path, article("one", "Q1?", MICRO_BODY), "1.md")
    write(tmp_path, article("two", "Q2?", MICRO_BODY, status="nope"), "2.md")
    write(tmp_path, article("one", "Q3?", MICRO_BODY), "3.md")
    loaded = load_corpus([tmp_path])
    assert [a.id for a in loaded.articles] == ["one"]
    assert sorted(Path(s).name for s in loaded.skipped) == ["2.md", "3.md"]
    dup = [p for p in loaded.problems if p.file.endswith("3.md")]
    assert dup and "duplicate article id 'one'" in dup[0].message and dup[0].line == 2


def test_default_corpus_parses_strictly():
    corpus = Path(__file__).resolve().parent.parent / "corpus"
    loaded = load_corpus([corpus])
    assert loaded.problems == []
    assert len(loaded.articles) >= 6
    assert all(a.review_status in ("submitted", "under_review") for a in loaded.articles), "no developer-written article may be approved"
    assert any(a.id == "chronic-microcytosis-causes" for a in loaded.articles)


def test_default_corpus_follows_the_seed_shape():
    from indexer.vocabulary import PART_KINDS

    corpus = Path(__file__).resolve().parent.parent / "corpus"
    articles = load_corpus([corpus]).articles
    assert len(articles) >= 32
    for a in articles:
        assert a.title.endswith("?"), f"{a.id}: the title is a question"
        parts = {s.path[0] for s in a.sections if s.path}
        assert {"From the Guidelines", "From the Research"} <= parts, a.id
        words = sum(len(b.text.split()) for s in a.sections for b in s.blocks)
        assert 300 <= words <= 900, f"{a.id}: {words} words"
        assert a.related_questions, a.id
        for s in a.sections:
            kind = PART_KINDS.get(s.path[0].lower()) if s.path else None
            for b in s.blocks:
                for c in b.citations:
                    for n in c.numbers:
                        assert kind is None or a.references[n].kind == kind, f"{a.path}:{c.line}: a {a.references[n].kind} reference cited under {s.path[0]}"


def test_a_file_reached_twice_is_read_once(tmp_path):
    """`medkb index corpus corpus/` (or a folder and one inside it) read each file twice and
    skipped every article as a 'duplicate' of itself."""
    from indexer.articles import corpus_files, load_corpus

    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.md").write_text(article("a", "What are the causes of chronic microcytosis?", MICRO_BODY))
    (corpus / "sub" / "b.md").write_text(article("b", "How is iron deficiency treated?", TREAT_BODY))
    once = corpus_files([corpus])
    assert corpus_files([corpus, Path(f"{corpus}/"), corpus / "sub", corpus / "a.md"]) == once
    loaded = load_corpus([corpus, corpus / "sub"])
    assert sorted(a.id for a in loaded.articles) == ["a", "b"] and loaded.problems == []

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.citations import CitationSyntaxError, expand, find_citations, format_citation, scan_citations


@pytest.mark.parametrize("text,numbers", [
    ("anemia [1].", [(1,)]),
    ("anemia [1, 3].", [(1, 3)]),
    ("anemia [2-4].", [(2, 3, 4)]),
    ("anemia [2\u20134, 7].", [(2, 3, 4, 7)]),
    ("anemia [2\u20144].", [(2, 3, 4)]),  # em dash
    ("anemia [2 \u2212 4].", [(2, 3, 4)]),  # minus sign
    ("one [1] and two [2].", [(1,), (2,)]),
    ("a [link](http://x) and [note] are not citations.", []),
])
def test_find_citations(text, numbers):
    assert [c.numbers for c in find_citations(text)] == numbers


@pytest.mark.parametrize("body", ["5-2", "0", "1-90"])
def test_malformed_citations_are_errors(body):
    with pytest.raises(CitationSyntaxError):
        expand(body)


@given(st.sets(st.integers(min_value=1, max_value=200), min_size=1, max_size=30))
def test_format_then_parse_round_trips(numbers):
    text = format_citation(sorted(numbers))
    [span] = find_citations(text)
    assert sorted(span.numbers) == sorted(numbers)


@pytest.mark.parametrize("body,highest", [("1-10000000", 1), ("1-3", 2), ("2-4", 0)])
def test_a_range_past_the_highest_reference_is_an_error_before_it_is_expanded(body, highest):
    with pytest.raises(CitationSyntaxError, match="runs past the references that exist"):
        expand(body, highest=highest)


def test_expand_within_the_references_that_exist():
    assert expand("1-3", highest=3) == (1, 2, 3)


@pytest.mark.parametrize("text,error", [
    ("see [1;2]", "commas"),
    ("see [^1]", "footnote-style [^1]"),
    ("see [1 2]", "cannot read [1 2]"),
    ("see [-1, 1]", "cannot read [-1, 1]"),
    ("see [1-]", "cannot read [1-]"),
    ("see [" + "9" * 5000 + "]", "too large to exist"),
])
def test_citation_shaped_brackets_that_cannot_be_read_say_why(text, error):
    [scanned] = scan_citations(text)
    assert scanned.error and error in scanned.error and len(scanned.error) < 200
    assert text[scanned.start : scanned.end] == scanned.text


@pytest.mark.parametrize("text", ["a [note] b", "dose [1.5 mg]", "[95% CI 1-2]", "[ ]", "[a1]"])
def test_brackets_that_are_not_citation_shaped_are_text(text):
    assert scan_citations(text) == []


def test_scanning_a_long_unclosed_bracket_is_linear():
    import time

    started = time.perf_counter()
    assert scan_citations("[" + "1, " * 100_000) == []
    assert time.perf_counter() - started < 2

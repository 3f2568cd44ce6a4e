import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.citations import CitationSyntaxError, expand, find_citations, format_citation


@pytest.mark.parametrize("text,numbers", [
    ("anemia [1].", [(1,)]),
    ("anemia [1, 3].", [(1, 3)]),
    ("anemia [2-4].", [(2, 3, 4)]),
    ("anemia [2\u20134, 7].", [(2, 3, 4, 7)]),
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

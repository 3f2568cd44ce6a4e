"""The index's own words, for spelling correction: counted at build time and saved with the build
(spelling.tsv), so that a query never has to count them.

A word is a run of letters with inner apostrophes or hyphens ("don't", "beta-thalassemia"),
lower-cased, from every chunk's text and every article's title. retrieval.query_understanding
builds its spelling dictionary (symspellpy) from these words and the drug names.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

SPELLING_FILE = "spelling.tsv"  # word<TAB>count, one a line, most frequent first (ties by word)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")


def surface_words(text: str) -> list[str]:
    """The words of `text` as typed, lower-cased (no stemming, stop words kept)."""
    return [w.lower() for w in _WORD.findall(text)]


def count_words(texts: Iterable[str]) -> Counter[str]:
    """How often each word (see `surface_words`) occurs in `texts`."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(surface_words(text))
    return counts


def write_words(path: Path, counts: Mapping[str, int]) -> None:
    """Write `counts` as spelling.tsv (UTF-8, `word<TAB>count` lines, most frequent first)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{word}\t{count}\n" for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def read_words(path: Path) -> dict[str, int]:
    """spelling.tsv back as {word: count}. Raises ValueError naming the line when one is malformed."""
    out: dict[str, int] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line:
            continue
        word, sep, count = line.partition("\t")
        if not sep or not word or not count.isdigit():
            raise ValueError(f"{path}:{number}: expected 'word<TAB>count'")
        out[word] = int(count)
    return out

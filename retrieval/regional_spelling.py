"""British and American spellings of the same word (anaemia / anemia, oesophagus / esophagus).

A clinician in the UK writes "microcytic anaemia"; a corpus written in American English says
"anemia", and BM25 sees two different words (its stemmer does not join them). `variants`
gives a word's other regional spellings: first from breame's lists (1,730 British and 1,706
American words, https://github.com/cdpierse/breame), then, for the medical words those lists
lack (haemochromatosis, ischaemia, oedema, coeliac), the British digraphs written as American
English writes them: "ae" and "oe" become "e" ("haem-" -> "hem-", "oedema" -> "edema"), and for
a word with neither, each "e" written as either digraph ("celiac" -> "coeliac"). The digraph
rule only ever gives candidates: the query reader keeps a variant only when the index uses it
more often than the word typed (QueryUnderstanding.respell_regional), so "aerobic" or "ferritin"
never turn into words nobody wrote.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Digraphs that British medical spelling keeps and American drops; the rule applies inside a
# word and at its start (oedema, oesophagus; haem, anaem, ischaem, leukaem, paed, foet, coel).
_DIGRAPH = re.compile(r"ae|oe")


@lru_cache(maxsize=1)
def _lists() -> tuple[dict[str, str], dict[str, str]]:
    from breame.data.spelling_constants import AMERICAN_ENGLISH_SPELLINGS, BRITISH_ENGLISH_SPELLINGS

    return BRITISH_ENGLISH_SPELLINGS, AMERICAN_ENGLISH_SPELLINGS


@lru_cache(maxsize=8192)
def variants(word: str) -> tuple[str, ...]:
    """The other regional spellings of `word` (lower case; empty when it has none), most likely first.

    `word` is one word; its case is ignored. From breame's lists in either direction (which
    have slips: "edema" -> "edoema"), then the "ae"/"oe" -> "e" candidates of a British-looking word (every digraph dropped, then each
    alone), or for a word with neither digraph each "e" written "ae" and "oe". Candidates are
    not checked against any vocabulary here; the caller keeps only those its index uses more.
    """
    lowered = word.lower()
    british_to_american, american_to_british = _lists()
    out: list[str] = []
    for table in (british_to_american, american_to_british):
        other = table.get(lowered)
        if other and other != lowered and other not in out:
            out.append(other)
    spots = [m.start() for m in _DIGRAPH.finditer(lowered)]
    candidates: list[str] = []
    if spots and len(lowered) >= 5:
        # "ae" -> "e" and "oe" -> "e": the digraph's first letter goes.
        candidates = ["".join(c for i, c in enumerate(lowered) if i not in spots)]
        candidates += [lowered[:spot] + lowered[spot + 1:] for spot in spots]
    elif len(lowered) >= 5:
        # The other way ("celiac" -> "coeliac", "edema" -> "oedema"): one "e" written as a digraph.
        candidates = [lowered[:i] + digraph + lowered[i + 1:] for i, c in enumerate(lowered) if c == "e" for digraph in ("ae", "oe")]
    if candidates:
        for candidate in candidates:
            if candidate != lowered and candidate not in out:
                out.append(candidate)
    return tuple(out)


def to_american(text: str) -> str:
    """`text` with each word that breame knows as British written the American way (lower case).

    Used to compare phrases whatever their spelling ("anaemia" matches a title's "anemia"); the
    digraph rule is not applied here, as nothing checks its result.
    """
    british_to_american, _ = _lists()
    return re.sub(r"[A-Za-z]+", lambda m: british_to_american.get(m.group(0).lower(), m.group(0).lower()), text)

"""Negation in queries: "anaemia NOT iron deficiency", "anaemia -thalassemia", "microcytosis
without iron deficiency", "anaemia not caused by iron deficiency".

`split_negation` takes the negated phrases out of the query (they are not searched for) and
`demote_negated` moves passages that are about a negated phrase (it is in their article title
or section heading, or said three times or more in the passage, other than after a negation
of its own) below the rest, keeping each group's order.

"X without Y" is a topic, not a negation, when an article title or heading of the index says
"without Y" itself ("Iron deficiency without anaemia"): the caller passes `is_topic` to check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from indexer.lexical import tokenize

# Triggers, longest first; "NOT" only in capitals (a lower-case "not" is usually part of the
# question: "why is iron not absorbed").
_TRIGGERS = (
    r"not\s+(?:caused|due|related|secondary)\s+(?:by|to)",
    r"other\s+than",
    r"rather\s+than",
    r"except(?:\s+for)?",
    r"excluding",
    r"apart\s+from",
    r"but\s+not",
    r"without",
)
_TRIGGER = re.compile(r"(?:(?<=\s)|^)(?P<trigger>NOT|(?i:" + "|".join(_TRIGGERS) + r"))\s+(?P<rest>.+)$")
_MINUS = re.compile(r"(?:(?<=\s)|^)-(?P<word>[A-Za-z][\w'-]*)")
# Where a negated phrase stops.
_STOP = re.compile(r"[,;:?!.()]|\b(?:and|or|but|in|for|with|who|which|that|when|what|how|is|are|does|do|treatment|diagnosis|management|causes?)\b", re.I)
_MAX_WORDS = 3
_NEGATED_BEFORE = re.compile(r"\b(?:no|not|without|non|excluding|except|other than)\s+(?:\w+\s+){0,2}$", re.I)


def split_negation(query: str, is_topic: Callable[[str, str], bool] = lambda trigger, phrase: False) -> tuple[str, list[str]]:
    """(the query without its negated phrases, the negated phrases). `is_topic(trigger,
    phrase)` says when "trigger phrase" names a topic rather than a negation."""
    negated: list[str] = []
    text = query
    for m in list(_MINUS.finditer(text))[::-1]:
        negated.insert(0, m.group("word"))
        text = text[: m.start()] + text[m.end():]
    pos = 0
    while (m := _TRIGGER.search(text, pos)) is not None:
        rest = m.group("rest")
        stop = _STOP.search(rest)
        words = (rest[: stop.start()] if stop else rest).split()[: 2 if m.group("trigger").lower() == "without" else _MAX_WORDS]
        phrase = " ".join(words)
        if not phrase or is_topic(m.group("trigger"), phrase):
            pos = m.end("trigger")
            continue
        end = m.start("rest")
        for w in words:
            end = text.index(w, end) + len(w)
        negated.append(phrase)
        text = f"{text[: m.start()]} {text[end:]}"
        pos = m.start()
    return " ".join(text.split()), negated


def _phrase_in(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(list(tokens[i : i + n]) == list(phrase) for i in range(len(tokens) - n + 1)) if n else False


def mentions(text: str, phrase: str) -> int:
    """How often `text` speaks of `phrase` other than after a negation ("without anaemia")."""
    target = tokenize(phrase)
    if not target:
        return 0
    count = 0
    pattern = re.compile(r"\b" + r"\W+".join(re.escape(w) for w in phrase.split()), re.I)
    for m in pattern.finditer(text):
        if not _NEGATED_BEFORE.search(text[max(0, m.start() - 40): m.start()]):
            count += 1
    if count == 0:
        # Different inflection or spelling: compare stems, without the negation check.
        tokens = tokenize(text)
        n = len(target)
        count = sum(1 for i in range(len(tokens) - n + 1) if tokens[i : i + n] == target)
    return count


def about(chunk, phrase: str) -> int:
    """2: the passage's title or heading is about `phrase`; 1: the passage says it three times
    or more; 0: neither."""
    heading = f"{chunk.article_title} . {' . '.join(chunk.section_path)}"
    if mentions(heading, phrase):
        return 2
    return 1 if mentions(chunk.text, phrase) >= 3 else 0


def demote_negated(hits: list, negated: Sequence[str]) -> list:
    """Hits about a negated phrase moved below the others (title/heading below text), each
    group in its own order."""
    if not negated:
        return hits
    tiers: list[list] = [[], [], []]
    for hit in hits:
        tiers[max(about(hit.chunk, p) for p in negated)].append(hit)
    return tiers[0] + tiers[1] + tiers[2]

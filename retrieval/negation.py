"""Negation in queries: "anaemia NOT iron deficiency", "anaemia -thalassemia", "microcytosis
without iron deficiency", "anaemia not caused by iron deficiency".

`split_negation` takes the negated phrases out of the query (they are not searched for) and
`demote_negated` moves passages that are about a negated phrase (it is in their article title
or section heading, or said three times or more in the passage, other than after a negation
of its own) below the rest, keeping each group's order.

"X without Y" is a topic, not a negation, when an article title or heading of the index says
"without Y" itself ("Iron deficiency without anaemia"): the caller passes `is_topic` to check.

The same words work the other way round: a passage whose article title or heading says it is
"without Y" ("How should iron deficiency without anemia be managed?") is not an answer to a
question that asks about Y ("65 year old man with new iron deficiency anaemia, next step?").
`demote_excluding` moves such passages below the rest, unless the question says "without Y"
itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from indexer.lexical import tokenize
from retrieval.regional_spelling import to_american

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
_STOP = re.compile(r"[,;:?!.()]|\b(?:and|or|but|in|for|with|who|which|that|when|what|how|is|are|be|been|should|can|could|may|might|will|would|does|do|treatment|diagnosis|management|causes?)\b", re.I)
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


# A negation and the one or two words it governs, taken out before asking what a question asks for.
_NEGATED_SPAN = re.compile(r"\b(?:no|not|without|non|excluding|except|other\s+than|rather\s+than|before)[\s-]+[\w'-]+(?:\s+[\w'-]+)?"
                           r"|[\w'-]+\s+(?:absent|not\s+present)\b", re.I)


@lru_cache(maxsize=65536)
def excluded_in(heading: str) -> tuple[str, ...]:
    """The phrases a title or heading says it is without ("Iron deficiency without anemia" -> ("anemia",))."""
    return tuple(split_negation(heading)[1])


def asks_for(question: str, phrase: str) -> bool:
    """Whether `question` names `phrase` other than after a negation of its own, whatever the
    regional spelling (a question's "anaemia" names a title's "anemia")."""
    target = tokenize(to_american(phrase))
    if not target:
        return False
    tokens = tokenize(to_american(_NEGATED_SPAN.sub(" ", question)))
    return _phrase_in(tokens, target)


def speaks_without(question: str, phrase: str) -> bool:
    """Whether `question` says `phrase` after a negation somewhere ("... without anaemia ...")."""
    target = tokenize(to_american(phrase))
    return any(_phrase_in(tokenize(to_american(m.group(0))), target) for m in _NEGATED_SPAN.finditer(question))


def demote_excluding(hits: list, question: str) -> list:
    """Hits whose article title or section heading excludes what `question` asks for moved below
    the others, each group in its own order. A question that itself says "without anaemia"
    anywhere ("iron deficiency without anaemia and iron deficiency anaemia: the difference") is
    about that topic too, so "Iron deficiency without anemia" stays where it was for it."""
    kept, moved = [], []
    for hit in hits:
        chunk = hit.chunk
        excluded = [p for h in (chunk.article_title, *chunk.section_path) for p in excluded_in(h)]
        (moved if any(asks_for(question, p) and not speaks_without(question, p) for p in excluded) else kept).append(hit)
    return kept + moved if moved else hits

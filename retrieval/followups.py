"""Follow-up questions: read "how is it treated?" in the context of the questions before it.

The topic of a conversation is what its last self-contained question was about, found
by peeling the question's frame off ("What are the causes of X?" -> "X"). A follow-up
that refers back ("it", "this condition", "they") gets the topic in place of the
reference; a short elliptic one ("and in pregnancy?") gets the topic appended. A
follow-up that names its own subject is left as it is.
"""

from __future__ import annotations

import re

_FRAME = [
    re.compile(r"^(?:what|how|why|when|where|which|who|whom)\b(?:\s+(?:is|are|was|were|do|does|did|can|could|should|would|will|to))?(?:\s*\((?:is|are)\))?\s+", re.I),
    re.compile(r"^(?:is|are|does|do|can|could|should|would|will)\s+", re.I),
    re.compile(r"^(?:tell me about|explain|describe|define|list)\s+", re.I),
    re.compile(r"^(?:the|a|an)\s+", re.I),
    re.compile(r"^(?:main\s+|common\s+|usual\s+|possible\s+|rare\s+)?(?:causes?|symptoms?|signs?(?:\s+and\s+symptoms)?|treatments?|therapy|therapies|management|diagnosis|"
               r"work-?up|tests?|evaluation|outlook|prognosis|complications?|risk\s+factors?|stages?|types?|definition|meaning|"
               r"inheritance\s+pattern)\s+(?:of|for|in|with|to|about)\s+", re.I),
    re.compile(r"^(?:prevent|diagnose|treat|manage|causes?|affects?)\s+(?=\S)", re.I),
    re.compile(r"^(?:at\s+risk\s+(?:of|for)|genetic\s+changes\s+related\s+to|research\s+\(or\s+clinical\s+trials\)\s+(?:is\s+)?being\s+done\s+for|"
               r"to\s+(?:prevent|diagnose|treat)|the\s+(?:treatments?|outlook)\s+for)\s+", re.I),
]
_TRAILING = re.compile(r"\s*(?:\?|\.|!)+\s*$")
_REFERENCE = re.compile(r"\b(?:this condition|this disease|this disorder|the condition|the disease|this|that|it|its|they|them|their|these|those)\b", re.I)
_STOP = {"a", "an", "the", "and", "or", "in", "on", "of", "for", "to", "with", "about", "what", "how", "is", "are", "does", "do", "can", "should",
         "when", "why", "which", "who", "it", "its", "this", "that", "they", "them", "their", "these", "those", "be", "there", "any", "me", "i", "my"}


def topic_of(question: str) -> str:
    """The subject of a self-contained question: 'What are the causes of chronic microcytic anemia?' -> 'chronic microcytic anemia'."""
    text = _TRAILING.sub("", " ".join(question.split()))
    changed = True
    while changed:
        changed = False
        for pattern in _FRAME:
            stripped = pattern.sub("", text, count=1)
            if stripped != text and stripped.strip():
                text, changed = stripped, True
    text = re.sub(r"\s+(?:treated|diagnosed|inherited|managed|prevented|caused|used|interpreted|defined)$", "", text, flags=re.I)
    return text.strip()


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]


def resolve(question: str, history: list[str], max_elliptic_words: int = 3) -> str:
    """The question as it should be searched, given the earlier questions of the conversation
    (oldest first; each as it was resolved). Without history, the question itself."""
    question = " ".join(question.split())
    if not history:
        return question
    topic = topic_of(history[-1])
    if not topic or topic.lower() in question.lower():
        return question
    reference = _REFERENCE.search(question)
    if reference:
        word = reference.group(0).lower()
        replacement = f"{topic}'s" if word == "its" else topic
        return f"{question[: reference.start()]}{replacement}{question[reference.end():]}"
    if len(content_words(question)) <= max_elliptic_words:
        return f"{_TRAILING.sub('', question)} ({topic})"
    return question


def resolve_history(questions: list[str]) -> list[str]:
    """Earlier questions (oldest first) each resolved against those before it, as a
    conversation would have resolved them turn by turn."""
    resolved: list[str] = []
    for question in questions:
        resolved.append(resolve(question, resolved))
    return resolved

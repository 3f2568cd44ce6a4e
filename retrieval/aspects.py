"""The aspect of a clinical question: what about its topic is being asked.

"How is chronic microcytosis treated?" asks for treatment; "causes of chronic
microcytosis" for causes. The aspects are the question types MedQuAD annotates and
clinicians ask (cause, diagnosis, treatment, dose, prognosis, prevention, risk,
symptoms, interpretation of a result), recognised from word stems in the question and
in a passage's sentence and section headings. Answers use them to prefer sentences that
address the aspect asked over sentences that only name the topic.
"""

from __future__ import annotations

import re

# Aspect -> stems that signal it (matched at word starts, case-insensitively; a stem ending in
# "=" is a whole word: "sign=" is "sign" but not "significant").
ASPECT_STEMS: dict[str, tuple[str, ...]] = {
    "cause": ("cause", "caused", "causes", "causing", "etiolog", "aetiolog", "why does", "why do", "due to", "result from", "origin"),
    "diagnosis": ("diagnos", "work-up", "workup", "work up", "evaluat", "test=", "tests=", "tested", "testing", "investigat", "screen", "differential", "assess", "detect"),
    "treatment": ("treat", "therap", "manag", "cure", "replac", "transfus", "supplement", "medication", "drug of choice"),
    "dose": ("dose", "dosing", "dosage", "how much", "mg/kg", "regimen"),
    "prognosis": ("prognos", "outlook", "survival", "life expectancy", "course of"),
    "prevention": ("prevent", "avoid", "prophyla"),
    "risk": ("risk", "who gets", "at risk", "susceptib"),
    "symptoms": ("symptom", "sign=", "signs=", "present with", "presents with", "presenting with", "presentation", "complain"),
    "interpretation": ("interpret", "what does", "mean", "high ", "low ", "raised", "elevated", "normal range", "threshold", "cut-off", "cutoff"),
}


def _stem(stem: str) -> str:
    return re.escape(stem[:-1]) + r"\b" if stem.endswith("=") else re.escape(stem)


_PATTERNS = {aspect: re.compile(r"\b(?:" + "|".join(_stem(s) for s in stems) + r")", re.I) for aspect, stems in ASPECT_STEMS.items()}

# Words that ask "what about it" rather than naming an aspect themselves.
_QUESTION_ONLY = ("interpretation",)


def aspects_in(text: str) -> set[str]:
    """The aspects that `text` speaks of (possibly several, possibly none)."""
    return {aspect for aspect, pattern in _PATTERNS.items() if pattern.search(text)}


def aspect_of(question: str) -> str | None:
    """The one aspect a question asks about, or None when it names none or several equally.

    Where a question names several (e.g. "tests to diagnose and treat"), none is returned:
    an answer should then not prefer one over another.
    """
    found = aspects_in(question)
    if len(found) > 1:
        # Interpretation words ("high", "low") are often part of the topic ("low ferritin"):
        # they give way to any other aspect named.
        found -= set(_QUESTION_ONLY)
    return next(iter(found)) if len(found) == 1 else None

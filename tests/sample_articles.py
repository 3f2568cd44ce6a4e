"""Articles written inside tests, in the corpus format: a builder and two small bodies."""

from __future__ import annotations

import textwrap


def article(article_id: str, title: str, body: str, *, status: str = "under_review", references: str | None = None,
            extra: str = "", date: str = "2025-04-05") -> str:
    """The text of an article in the corpus format; `references` is YAML for the list."""
    if references is None:
        references = textwrap.dedent("""\
          - id: 1
            kind: guideline
            title: A guideline
            source: A society
            year: 2021
          - id: 2
            kind: research
            title: A review
            source: A journal
            year: 2019
            pmid: "12345"
        """)
    refs = textwrap.indent(references, "  ")
    return f"---\nid: {article_id}\ntitle: {title}\nreview_status: {status}\nlast_updated: {date}\naudience: clinician\n{extra}references:\n{refs}---\n\n{textwrap.dedent(body).strip()}\n"


MICRO_BODY = """
## From the Guidelines

Chronic microcytosis is caused mostly by iron deficiency, thalassaemia trait and anaemia of chronic disease [1].

### Causes of Chronic Microcytosis

- Sideroblastic anaemia from defective heme synthesis [1].
- Lead poisoning, which blocks heme synthesis [1, 2].

## From the Research

### Evaluation

Serum ferritin is the first test in the evaluation of microcytosis [2]. A low ferritin confirms iron deficiency [2].
"""

TREAT_BODY = """
## From the Guidelines

### Oral iron

Oral iron once daily or on alternate days is first-line treatment for iron deficiency [1].

## From the Research

### Intravenous iron

Intravenous iron suits malabsorption and ongoing blood loss [2].
"""

"""A generated corpus of many small valid articles, for the build-cache and hot-reload tests."""

from __future__ import annotations

from pathlib import Path

from sample_articles import article

WORDS = ("anaemia ferritin haemoglobin marrow transfusion iron folate thalassaemia platelet warfarin heparin apixaban "
         "kidney dialysis insulin glucose thyroid cortisol asthma inhaler spirometry statin lipid angina").split()


def body(i: int, extra: str = "") -> str:
    a, b, c = WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)], WORDS[(i * 11 + 5) % len(WORDS)]
    return f"""
## From the Guidelines

### Causes of topic{i}

Topic{i} is linked to {a} and {b} in adults [1]. {extra}

- A first cause of topic{i} involves {c} [1].
- A second cause of topic{i} involves {a} and {c} [2].

## From the Research

### Evaluation of topic{i}

Measuring {b} is the first step in topic{i} [2]. A repeat test of {c} confirms it [1, 2].
"""


def write_article(corpus: Path, i: int, extra: str = "") -> Path:
    path = corpus / f"topic-{i:03d}.md"
    path.write_text(article(f"topic-{i:03d}", f"What causes topic{i}?", body(i, extra)))
    return path


def make_corpus(corpus: Path, n: int) -> Path:
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_article(corpus, i)
    return corpus

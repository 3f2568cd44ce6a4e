"""Speed of `indexer.chunking.sentence_spans` on real paragraphs (a benchmark, not a test).

    python -m evals.sentence_bench [--medquad DIR] [--paragraphs 5000] [--repeat 3]

Paragraphs are the block texts of the articles in corpus/ (repeated up to --paragraphs)
and, when the MedQuAD folder is there, the answer paragraphs of every 8th MedQuAD file.
Also times chunk_article over the corpus/ articles with the test suite's fake embedder's
token counter, i.e. chunking without the model's tokenizer.
Prints paragraphs, sentences and characters per CPU second (the best of --repeat runs; CPU
time rather than wall time, so that other work on the machine disturbs the figure less).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from indexer.articles import parse_article
from indexer.chunking import sentence_spans

REPO = Path(__file__).resolve().parent.parent


def corpus_paragraphs() -> list[str]:
    out = []
    for path in sorted((REPO / "corpus").glob("*.md")):
        for section in parse_article(path).sections:
            out.extend(block.text for block in section.blocks)
    return out


def medquad_paragraphs(medquad: Path, every: int = 8) -> list[str]:
    """Paragraphs and list items of MedQuAD answers, cut as the importer cuts them."""
    import xml.etree.ElementTree as ET

    from indexer.importers.medquad import answer_blocks

    out: list[str] = []
    for path in sorted(medquad.rglob("*.xml"))[::every]:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        for element in root.iter():
            if element.tag.lower() == "answer" and element.text and element.text.strip():
                for block in answer_blocks(element.text):
                    items = getattr(block, "items", [block])
                    out.extend(item.text for item in items if item.text.strip())
    return out


def measure(name: str, paragraphs: list[str], repeat: int) -> None:
    sentence_spans("Warm up. Once.")
    best = float("inf")
    sentences = 0
    for _ in range(repeat):
        t0 = time.process_time()
        sentences = sum(len(sentence_spans(p)) for p in paragraphs)
        best = min(best, time.process_time() - t0)
    chars = sum(len(p) for p in paragraphs)
    print(f"{name:>8}: {len(paragraphs):6d} paragraphs, {sentences:6d} sentences in {best:6.2f} s = "
          f"{len(paragraphs) / best:8.0f} paragraphs/s, {sentences / best:8.0f} sentences/s, {chars / best / 1e6:5.2f} MB/s")


def measure_chunking(repeat: int) -> None:
    from indexer.chunking import chunk_article

    articles = [parse_article(path) for path in sorted((REPO / "corpus").glob("*.md"))]

    def count(texts):  # whitespace words: chunking's own cost, without the model's tokenizer
        return [len(t.split()) for t in texts]

    best, chunks = float("inf"), 0
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(10):
            chunks = sum(len(chunk_article(a, count)) for a in articles)
        best = min(best, time.process_time() - t0)
    print(f"   chunk: {10 * len(articles)} articles, {10 * chunks} chunks in {best:6.2f} s = {10 * len(articles) / best:8.0f} articles/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--medquad", type=Path, default=REPO.parent / "shared" / "data" / "medquad")
    parser.add_argument("--paragraphs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = corpus_paragraphs()
    measure("corpus", (base * (args.paragraphs // len(base) + 1))[: args.paragraphs], args.repeat)
    if args.medquad.is_dir():
        measure("medquad", medquad_paragraphs(args.medquad)[: args.paragraphs], args.repeat)
    measure_chunking(args.repeat)


if __name__ == "__main__":
    main()

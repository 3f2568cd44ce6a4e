"""Build two BEIR-layout dev sets from MedQuAD (read in place from ../shared, never copied into the repo).

    python -m evals.medquad_devsets [--medquad DIR] [--out var/devsets] [--queries 2000]

1. medquad-qa: each question against its own answer, over the whole answered collection
   (one corpus document per answered question-answer pair).
2. medquad-followup: a first question that names the focus, then another question about
   the same focus in which the focus is replaced by "it" or "this condition"; judged against
   the second question's answer, with the first question as the conversation's context
   (queries.jsonl metadata.context).

3. medquad-followup-aspects (the harder one): a first question names the focus; the
   follow-up asks another aspect of the same focus in generic words ("how is it treated?",
   "what are the symptoms?", "who is at risk?"), judged against that aspect's answer. Mixed
   in: an acknowledgement before the follow-up ("thanks"), a topic switch (an earlier
   question about another focus, then one about this focus), and both. Each query's
   metadata has the conversation (`context`), the MedQuAD question type asked (`qtype`), the
   aspect (`aspect`, retrieval.aspects' name) and `tags` (the mix). `doc_types.tsv` gives
   every corpus document's question type, for `python -m evals.followup_aspects`.

All share one corpus.jsonl (identical bytes), so `medkb eval` imports and indexes it once.
Questions whose answer MedQuAD repeats word for word under other documents (boilerplate
such as GHR's inheritance paragraphs) are not used as queries: any copy would answer them,
so they cannot tell two rankings apart. Their documents stay in the corpus as distractors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from pathlib import Path

from indexer.importers.corpus_writer import BulletList
from indexer.importers.medquad import read as read_medquad
from indexer.importers.report import ReportBuilder

DEFAULT_MEDQUAD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "medquad"
_PREPOSITION = re.compile(r"\b(of|for|with|to|about|from|in|on|by|cause|causes|treat|prevent|have|get|develop)\s*$", re.I)


def _plain(blocks) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, BulletList):
            parts.extend(item.text for item in block.items)
        else:
            parts.append(block.text)
    return "\n".join(parts)


def replace_focus(question: str, focus: str) -> str | None:
    """The question with its focus replaced by "this condition" (after a preposition or verb) or "it";
    None when the focus does not appear in it word for word."""
    match = re.search(re.escape(focus), question, flags=re.I)
    if not match:
        return None
    before, after = question[: match.start()], question[match.end() :]
    pronoun = "this condition" if _PREPOSITION.search(before) else "it"
    rewritten = re.sub(r"\s+", " ", f"{before}{pronoun}{after}").strip()
    rewritten = re.sub(r"\s+\?", "?", rewritten)
    rewritten = re.sub(r"\((are|is)\)\s*", "", rewritten) if "(are)" in rewritten or "(is)" in rewritten else rewritten
    return rewritten[:1].upper() + rewritten[1:]


def collect(medquad: Path) -> list[dict]:
    """Every answered pair: document focus, question, answer text, BEIR doc id."""
    report = ReportBuilder()
    pairs: list[dict] = []
    for article in read_medquad(medquad, report):
        qids = article.metadata.get("question_ids") or []
        questions = article.metadata.get("questions")  # original wording, when the importer keeps it
        qtypes = article.metadata.get("question_types") or []
        for index, section in enumerate(article.sections):
            text = _plain(section.blocks).strip()
            if not text:
                continue
            pairs.append({
                "doc_id": f"{article.id}-q{index + 1}",
                "article": article.id,
                "focus": str(article.metadata.get("focus") or article.title),
                "title": article.title,
                "question": questions[index] if questions else section.heading,
                "qid": qids[index] if index < len(qids) else "",
                "qtype": qtypes[index] if index < len(qtypes) else "",
                "text": text,
            })
    return pairs


# MedQuAD question type -> (retrieval.aspects' name, follow-ups that ask it in generic words).
ASPECT_FOLLOW_UPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "treatment": ("treatment", ("How is it treated?", "What are the treatments?", "What treatment is there for this condition?",
                                "How do you treat it?")),
    "symptoms": ("symptoms", ("What are the symptoms?", "What are its signs and symptoms?", "What symptoms does it have?")),
    "causes": ("cause", ("What causes it?", "What are the causes?", "Why does it happen?")),
    "exams and tests": ("diagnosis", ("How is it diagnosed?", "What tests are used to diagnose it?", "How is this condition diagnosed?")),
    "outlook": ("prognosis", ("What is the outlook?", "What is the prognosis?", "What is the outlook for this condition?")),
    "susceptibility": ("risk", ("Who is at risk?", "Who gets it?", "Who is at risk for this condition?")),
    "prevention": ("prevention", ("How can it be prevented?", "Can it be prevented?", "How is it prevented?")),
}
ACKNOWLEDGEMENTS = ("thanks", "ok, thanks", "great", "thank you!", "ok", "got it, thanks")
MIXES = ("plain", "acknowledgement", "switch", "switch+acknowledgement")


def aspect_conversations(pairs: list[dict], same_answer: dict[str, list[str]], n_queries: int, rng: random.Random) -> list[dict]:
    """Follow-ups asking another aspect of the first question's focus in generic words (see the module's docstring)."""
    by_article: dict[str, list[dict]] = {}
    for p in pairs:
        by_article.setdefault(p["article"], []).append(p)
    openers: dict[str, dict] = {}  # article -> a first question that names its focus
    candidates = []
    for article_id in sorted(by_article):
        group = by_article[article_id]
        naming = [p for p in group if p["focus"] and p["focus"].lower() in p["question"].lower()]
        if not naming:
            continue
        openers[article_id] = naming[0]
        for target in group:
            if target["qtype"] not in ASPECT_FOLLOW_UPS or len(same_answer[target["answer_key"]]) != 1:
                continue
            first = next((p for p in naming if p["qtype"] != target["qtype"]), None)
            if first is not None:
                candidates.append((first, target))
    chosen = rng.sample(candidates, min(n_queries, len(candidates)))
    others = sorted(openers)
    out = []
    for first, target in chosen:
        aspect, phrasings = ASPECT_FOLLOW_UPS[target["qtype"]]
        mix = MIXES[rng.randrange(len(MIXES))]
        context = [first["question"]]
        if mix.startswith("switch"):
            other = openers[others[rng.randrange(len(others))]]
            while other["article"] == first["article"]:
                other = openers[others[rng.randrange(len(others))]]
            context = [other["question"], first["question"]]
        if mix.endswith("acknowledgement"):
            context.append(ACKNOWLEDGEMENTS[rng.randrange(len(ACKNOWLEDGEMENTS))])
        out.append({"_id": f"fa-{target['doc_id']}", "text": phrasings[rng.randrange(len(phrasings))],
                    "metadata": {"context": context, "original": target["question"], "qtype": target["qtype"], "aspect": aspect,
                                 "focus": target["focus"], "tags": [mix, target["qtype"]]},
                    "doc_id": target["doc_id"]})
    return out


def build(medquad: Path, out: Path, n_queries: int, seed: int = 13, aspect_queries: int | None = None) -> dict[str, int]:
    pairs = collect(medquad)
    same_answer: dict[str, list[str]] = {}
    for p in pairs:
        key = hashlib.sha1(" ".join(p["text"].lower().split()).encode()).hexdigest()
        p["answer_key"] = key
        same_answer.setdefault(key, []).append(p["doc_id"])

    corpus_lines = [json.dumps({"_id": p["doc_id"], "title": p["title"], "text": p["text"], "metadata": {"source": "MedQuAD (CC BY 4.0)", "question_id": p["qid"]}}, ensure_ascii=False)
                    for p in pairs]
    rng = random.Random(seed)
    unique = [p for p in pairs if len(same_answer[p["answer_key"]]) == 1]

    # 1. question -> its own answer
    qa = rng.sample(unique, min(n_queries, len(unique)))
    qa_queries = [{"_id": f"qa-{p['doc_id']}", "text": p["question"]} for p in qa]
    qa_qrels = [(f"qa-{p['doc_id']}", p["doc_id"], 1) for p in qa]

    # 2. follow-ups: first question names the focus; a later one with the focus replaced
    by_article: dict[str, list[dict]] = {}
    for p in pairs:
        by_article.setdefault(p["article"], []).append(p)
    candidates = []
    for article_id in sorted(by_article):
        group = by_article[article_id]
        first = group[0]
        if len(group) < 2 or not first["focus"] or first["focus"].lower() not in first["question"].lower():
            continue
        later = [(p, replace_focus(p["question"], p["focus"])) for p in group[1:] if len(same_answer[p["answer_key"]]) == 1]
        later = [(p, q) for p, q in later if q and first["focus"].lower() not in q.lower()]
        if later:
            p, q = later[rng.randrange(len(later))]
            candidates.append((first, p, q))
    fu = rng.sample(candidates, min(n_queries, len(candidates)))
    fu_queries = [{"_id": f"fu-{p['doc_id']}", "text": q, "metadata": {"context": [first["question"]], "original": p["question"]}} for first, p, q in fu]
    fu_qrels = [(f"fu-{p['doc_id']}", p["doc_id"], 1) for _, p, _ in fu]

    # 3. follow-ups asking another aspect of the same focus in generic words
    fa = aspect_conversations(pairs, same_answer, n_queries if aspect_queries is None else aspect_queries, random.Random(seed + 1))
    fa_qrels = [(q["_id"], q.pop("doc_id"), 1) for q in fa]

    sets = (("medquad-qa", qa_queries, qa_qrels), ("medquad-followup", fu_queries, fu_qrels), ("medquad-followup-aspects", fa, fa_qrels))
    for name, queries, qrels in sets:
        d = out / name
        (d / "qrels").mkdir(parents=True, exist_ok=True)
        (d / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
        (d / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in sorted(queries, key=lambda q: q["_id"])) + "\n", encoding="utf-8")
        with open(d / "qrels" / "test.tsv", "w", encoding="utf-8") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for row in sorted(qrels):
                fh.write("\t".join(map(str, row)) + "\n")
    with open(out / "medquad-followup-aspects" / "doc_types.tsv", "w", encoding="utf-8") as fh:
        fh.write("corpus-id\tqtype\n")
        for p in pairs:
            fh.write(f"{p['doc_id']}\t{p['qtype']}\n")
    return {"aspect_followup_queries": len(fa), "documents": len(pairs), "documents_with_unique_answers": len(unique), "qa_queries": len(qa_queries), "followup_candidates": len(candidates), "followup_queries": len(fu_queries)}


def write_sample(out: Path, n_queries: int, seed: int = 17) -> dict[str, int]:
    """medquad-followup-aspects-sample: `n_queries` follow-ups of medquad-followup-aspects over a corpus of only
    the documents of the focuses they ask about (every answer of each focus, so the other aspects of the same
    focus, and the other focuses of the sample, are the distractors). Small enough to index in minutes; its
    recall is higher than over the whole collection, which has many more distractors."""
    source = out / "medquad-followup-aspects"
    queries = [json.loads(line) for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    qrels = [line.split("\t") for line in (source / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    chosen = sorted(random.Random(seed).sample(queries, min(n_queries, len(queries))), key=lambda q: q["_id"])
    ids = {q["_id"] for q in chosen}
    judged = {doc for qid, doc, _ in qrels if qid in ids}
    corpus = [json.loads(line) for line in (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    articles = {doc.rsplit("-q", 1)[0] for doc in judged}
    docs = [d for d in corpus if d["_id"].rsplit("-q", 1)[0] in articles]
    d = out / "medquad-followup-aspects-sample"
    (d / "qrels").mkdir(parents=True, exist_ok=True)
    (d / "corpus.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in docs) + "\n", encoding="utf-8")
    (d / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in chosen) + "\n", encoding="utf-8")
    with open(d / "qrels" / "test.tsv", "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for row in sorted(r for r in qrels if r[0] in ids):
            fh.write("\t".join(row) + "\n")
    (d / "doc_types.tsv").write_bytes((source / "doc_types.tsv").read_bytes())
    return {"sample_queries": len(chosen), "sample_documents": len(docs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--medquad", type=Path, default=DEFAULT_MEDQUAD, help="MedQuAD folder (default ../shared/data/medquad)")
    parser.add_argument("--out", type=Path, default=Path("var/devsets"), help="where the two dev sets are written")
    parser.add_argument("--queries", type=int, default=2000, help="queries sampled per dev set (deterministic)")
    parser.add_argument("--aspect-queries", type=int, default=None, help="queries in medquad-followup-aspects (default: --queries)")
    parser.add_argument("--sample", type=int, default=0,
                        help="also write medquad-followup-aspects-sample: this many follow-ups over only their focuses' documents (indexes in minutes)")
    args = parser.parse_args(argv)
    if not args.medquad.is_dir():
        print(f"MedQuAD not found at {args.medquad}", file=sys.stderr)
        return 2
    counts = build(args.medquad, args.out, args.queries, aspect_queries=args.aspect_queries)
    if args.sample:
        counts.update(write_sample(args.out, args.sample))
    print(json.dumps(counts))
    print(f"wrote {args.out}/medquad-qa, {args.out}/medquad-followup and {args.out}/medquad-followup-aspects")
    return 0


if __name__ == "__main__":
    sys.exit(main())

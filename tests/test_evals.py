"""Evaluation: loaders and their errors, max-passage collapse, metrics from pytrec_eval, and a
smoke run of the whole pipeline whose outputs must be written and well-formed."""

import json
import os
import re
import time
from pathlib import Path

import pytest

from evals.datasets import EvalSetError, load_beir, load_gold
from evals.metrics import METRICS, evaluate, means
from evals.pipeline import cached_index, evaluate_set, import_beir_corpus
from evals.runner import collapse, read_trec
from indexer.chunking import Chunk
from indexer.index_store import load_index
from retrieval.search import Hit, SearchService

from fakes import FakeEmbedder

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
MINI = TESTS / "fixtures" / "beir-mini"


def hit(chunk_id: str, article: str, section: str, score: float) -> Hit:
    chunk = Chunk(id=chunk_id, section_id=f"{article}#{section}", article_id=article, article_title="t", section_path=[section], text="x",
                  citations=[], references=[], unresolved_citations=[], review_status="submitted", audience="both", last_updated=None,
                  evidence_kinds=[], specialty=None, position=0, line=1, token_count=1)
    return Hit(rank=0, score=score, chunk=chunk)


def test_collapse_ranks_each_unit_by_its_first_passage():
    results = [hit("a#s~0", "a", "s", 0.9), hit("b#s~0", "b", "s", 0.8), hit("a#t~0", "a", "t", 0.7), hit("c#s~0", "c", "s", 0.7)]
    assert collapse(results, "article", 10) == [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    assert [u for u, _ in collapse(results, "section", 10)] == ["a#s", "b#s", "a#t", "c#s"]
    assert collapse(results, "article", 2) == [("a", 0.9), ("b", 0.8)]


def test_collapse_keeps_a_demotion_that_did_not_rescore():
    # Negation moves passages below the rest without changing their scores: the run must
    # score what the reader sees, not what sorting by score would have shown.
    results = [hit("b#s~0", "b", "s", 0.4), hit("a#s~0", "a", "s", 0.9)]
    assert [u for u, _ in collapse(results, "article", 10)] == ["b", "a"]
    assert evaluate({"q": {"a": 1}}, {"q": collapse(results, "article", 10)})["q"]["mrr@10"] == 0.5


def test_metrics_score_the_ranking_as_given():
    qrels = {"q1": {"a": 2, "b": 1}, "q2": {"c": 1}, "q3": {"z": 1}}
    ranking = {"q1": [("a", 0.9), ("x", 0.8), ("b", 0.5)], "q2": [("x", 0.5), ("c", 0.5)]}
    per = evaluate(qrels, ranking)
    assert per["q1"]["mrr@10"] == 1.0 and per["q2"]["mrr@10"] == 0.5, "a tie keeps the order it was ranked in"
    assert per["q3"] == {m: 0.0 for m in METRICS}, "a query with no results scores zero, it is not dropped"
    assert per["q1"]["recall@10"] == 1.0 and per["q1"]["ndcg@10"] < 1.0
    strict = evaluate(qrels, ranking, threshold=2)
    assert strict["q2"]["recall@10"] == 0.0 and strict["q1"]["map@10"] == 1.0
    assert means(per)["mrr@10"] == pytest.approx(0.5)


def test_beir_loader(tmp_path):
    s = load_beir(MINI)
    assert len(s.queries) == 6 and s.judged_queries() == ["q1", "q2", "q3", "q4", "q5"]
    assert s.qrels["q1"] == {"d1": 2, "d3": 1} and s.level == "article"
    bad = tmp_path / "bad"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text((MINI / "corpus.jsonl").read_text())
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n{"_id": "q2", "te\n')
    (bad / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(EvalSetError, match=r"queries.jsonl:2: not valid JSON"):
        load_beir(bad)
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (bad / "qrels" / "test.tsv").write_text("q1\td1\tone\n")
    with pytest.raises(EvalSetError, match=r"test.tsv:1: score 'one'"):
        load_beir(bad)
    with pytest.raises(EvalSetError, match="missing"):
        load_beir(tmp_path / "nothing")
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td2\t1\n")
    s = load_beir(bad)
    assert set(s.qrels) == {"q1"} and "1 judged query id(s) not in queries.jsonl" in s.source["dropped_judged_queries"]


def test_gold_loader_resolves_sections_and_fails_loudly(tiny_corpus, tmp_path):
    gold = tmp_path / "gold"
    gold.mkdir()
    line = {"id": "g1", "query": "lead", "tags": ["keyword"], "judgments": [
        {"section": "microcytosis > From the Guidelines > Causes of Chronic Microcytosis", "grade": 2}, {"article": "iron-treatment", "grade": 1}]}
    (gold / "a.jsonl").write_text(json.dumps(line) + "\n")
    s = load_gold(gold, [tiny_corpus])
    assert s.qrels["g1"]["microcytosis#from-the-guidelines-causes-of-chronic-microcytosis"] == 2
    assert s.qrels["g1"]["iron-treatment#from-the-guidelines-oral-iron"] == 1
    assert s.at_article_level().qrels["g1"] == {"microcytosis": 2, "iron-treatment": 1}
    line["judgments"][0]["section"] = "microcytosis > From the Guidelines > Renamed Heading"
    (gold / "a.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(EvalSetError, match=r"a.jsonl:1: no section"):
        load_gold(gold, [tiny_corpus])


def test_project_gold_set_is_valid_and_covers_the_corpus():
    s = load_gold(REPO / "evals" / "gold", [REPO / "corpus"])
    assert len(s.queries) >= 80
    tags = [t for ts in s.tags.values() for t in ts]
    assert tags.count("hard") >= 20 and tags.count("abbreviation") >= 10 and tags.count("misspelling") >= 3


def test_pipeline_smoke_writes_well_formed_outputs(tmp_path):
    embedder = FakeEmbedder()
    corpus = import_beir_corpus(MINI, tmp_path / "cache", log=lambda m: None)
    root = cached_index([corpus], tmp_path / "cache", embedder, log=lambda m: None)
    messages = []
    assert cached_index([corpus], tmp_path / "cache", embedder, log=messages.append) == root
    assert "reusing the cached index" in messages[0], "a second run does not re-embed"
    service = SearchService(load_index(root), embedder)
    evalset = load_beir(MINI)

    def search(query, context, k):
        return service.search(query, k).hits, query

    first = evaluate_set(evalset, search, tmp_path / "run1", {"retriever": "dense"}, service.manifest, progress=None)
    out = first.out_dir
    for name in ("run.trec", "metrics.json", "per_query.jsonl", "settings.json", "report.md", "report.html", "per_query.png"):
        assert (out / name).stat().st_size > 0, name
    lines = (out / "run.trec").read_text().splitlines()
    assert all(len(line.split()) == 6 and line.split()[1] == "Q0" for line in lines)
    for q in evalset.judged_queries():
        ranks = [int(line.split()[3]) for line in lines if line.split()[0] == q]
        assert ranks == list(range(1, len(ranks) + 1))
    assert read_trec(out / "run.trec").units.keys() == set(evalset.judged_queries())
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["means"]) == set(METRICS) and all(0 <= v <= 1 for v in metrics["means"].values())
    per_query = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert [p["id"] for p in per_query] == evalset.judged_queries()
    settings = json.loads((out / "settings.json").read_text())
    if (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", settings["git"]["commit"]), "the run records the commit it was made from"
    else:
        assert settings["git"] == {"commit": "unknown", "dirty": None}
    assert settings["index_manifest"]["model"]["name"] == embedder.name and settings["metrics_library"] == "pytrec_eval"
    assert "| ndcg@10 |" in (out / "report.md").read_text()
    assert "data:image/png;base64," in (out / "report.html").read_text()

    second = evaluate_set(evalset, search, tmp_path / "run2", {"retriever": "dense"}, service.manifest, compare_dir=out)
    report = (second.out_dir / "report.md").read_text()
    assert "Against `run1`: 0 queries helped, 0 hurt" in report and (second.out_dir / "compare.png").exists()


def test_bench_smoke_prints_and_writes_its_figures(tmp_path, tiny_corpus):
    from evals.bench import format_table, run_bench

    results = run_bench(["default", "synthetic"], FakeEmbedder(), lambda m: None, corpus_dirs=[tiny_corpus], medquad_index=None,
                        medquad_corpus=None, medquad_data=None, queries=5, http_requests=5, vectors=5000, build_sample=0, http=False,
                        workdir=tmp_path)
    default = results["default"]
    assert default["chunks"] > 0 and default["build"]["pipeline_chunks_per_s"] > 0 and default["build"]["ratio_to_raw_encode"] > 0
    assert default["index_bytes_per_chunk"] > 0
    assert set(default["search"]["uncached_ms"]) == {"p50", "p95", "p99"}
    synthetic = results["synthetic"]
    assert synthetic["vectors"] == 5000 and all(0 <= ivf["recall@10_vs_flat"] <= 1 for ivf in synthetic["ivf"])
    table = format_table(results)
    assert "default" in table and "vector search alone" in table
    # Which CPU, since figures from two machines are not comparable: the model name as the
    # kernel reports it, and the instruction sets the model's speed depends on.
    cpu = results["machine"]
    if Path("/proc/cpuinfo").exists():
        model_names = {line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")}
        assert cpu["cpu_model"] in model_names and cpu["cpu_model"] in table.splitlines()[0]
        has_avx2 = " avx2 " in " " + Path("/proc/cpuinfo").read_text().replace("\n", " ") + " "
        assert ("avx2" in cpu["cpu_flags"]) == has_avx2
    assert [entry["measurement"] for entry in results["load"]] == ["default: build and search", "synthetic vectors"]
    assert all(entry["load_1m"] >= 0 and isinstance(entry["busy"], bool) for entry in results["load"])
    busy = {**results, "load": [{**results["load"][0], "busy": True, "load_1m": 9.0}]}
    assert "WARNING: the machine was busy during default: build and search" in format_table(busy)
    json.dumps(results)  # the JSON output is serialisable


def test_bench_waits_for_its_own_load_to_settle_and_still_warns_of_someone_elses():
    """A measurement right after an HTTP run sees the load that run left (the 1-minute average
    decays for about a minute): the bench waits for it to fall rather than call its own figure
    noisy, records the wait, and still reports a machine that stays busy."""
    from evals.bench import BUSY_LOAD_PER_CPU, machine_load

    cpus = os.cpu_count() or 1
    high, low = 3 * BUSY_LOAD_PER_CPU * cpus, 0.5 * BUSY_LOAD_PER_CPU * cpus
    readings = iter([high, high, low])
    slept: list[float] = []
    decaying = machine_load("medquad: HTTP", lambda m: None, settle=90, getloadavg=lambda: (next(readings), 1.0, 1.0), sleep=slept.append)
    assert not decaying["busy"] and decaying["load_1m"] == round(low, 2) and decaying["settled_s"] == 10 and slept == [5.0, 5.0]

    slept.clear()
    logged: list[str] = []
    stays_busy = machine_load("medquad: HTTP", logged.append, settle=12, getloadavg=lambda: (high, 1.0, 1.0), sleep=slept.append)
    assert stays_busy["busy"] and stays_busy["settled_s"] == 12 and slept == [5.0, 5.0, 2.0]
    assert any("busy" in line for line in logged)

    slept.clear()
    at_once = machine_load("medquad: HTTP", lambda m: None, getloadavg=lambda: (high, 1.0, 1.0), sleep=slept.append)
    assert at_once["busy"] and at_once["settled_s"] == 0 and not slept  # settle=0: no waiting


class _MeteredEmbedder(FakeEmbedder):
    """FakeEmbedder whose calls advance a CPU clock by a known cost: 3 ms a query in any batch,
    0.5 ms a word piece of passages ([CLS]/[SEP] included)."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.document_threads = 4

    def encode_queries(self, texts):
        self.seconds += 0.003 * len(texts)
        return super().encode_queries(texts)

    def encode_documents(self, texts, batch_size=32, progress=None):
        assert self.document_threads == 1  # one model call at a time while measured
        self.seconds += 0.0005 * sum(n + 2 for n in self.count_tokens(texts))
        return super().encode_documents(texts, batch_size, progress)


def test_bench_model_floor_gives_the_ceilings_the_model_alone_sets():
    from evals.bench import format_table, model_floor

    embedder = _MeteredEmbedder()
    passages = ["iron deficiency anaemia is common", "ferritin below 30 confirms it"]
    corpus = (passages + ["lead poisoning"]) * 200
    floor = model_floor(embedder, ["causes of microcytosis", "what is ferritin", "thalassaemia trait"], passages, cores=2,
                        corpus_texts=corpus, clock=lambda: embedder.seconds)
    assert embedder.document_threads == 4  # put back
    assert floor["query_cpu_ms"] == floor["query_cpu_ms_batched_8"] == 3.0
    assert floor["passage_cpu_ms_per_1000_word_pieces"] == 500.0
    assert floor["passage_word_pieces"] == 5 + 2 + 5 + 2
    assert floor["model_only_requests_per_s"] == round(2 * 1000 / 3, 1)  # two cores, 3 ms a request
    assert floor["cpu_ms_per_request_at_target"] == 10.0 and floor["cpu_ms_left_at_target"] == 7.0  # 200 req/s on two cores
    assert floor["corpus_word_pieces"] == 200 * (14 + 2 + 2) and floor["corpus_embed_floor_seconds"] == 0.9  # 3,600 x 0.5 ms on two cores
    table = format_table({"machine": {"cpus": 2, "platform": "test", "python": "3"}, "model": floor})
    assert "at most 666.7 req/s" in table and "7.0 ms after its query's embedding" in table
    with pytest.raises(ValueError):
        model_floor(embedder, [], passages, cores=2)


def test_bench_counts_the_cpu_of_a_server_and_its_worker_processes():
    """The HTTP figures' server CPU per request is read from /proc for the server and its
    workers: a child that burns CPU is counted, and the count only grows."""
    import subprocess
    import sys

    from evals.bench import tree_cpu_seconds

    before = tree_cpu_seconds(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ntime.sleep(5)"])
    try:
        time.sleep(0.3)
        deadline = time.monotonic() + 20
        while tree_cpu_seconds(os.getpid()) - before < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tree_cpu_seconds(os.getpid()) - before >= 0.4, "the busy child's CPU is counted with its parent's"
    finally:
        child.kill()
        child.wait()


@pytest.mark.model
def test_eval_command_on_the_gold_set(tmp_path, real_index):
    import subprocess
    import sys

    out = tmp_path / "gold"
    cmd = [sys.executable, "-m", "medkb.cli", "eval", "--limit", "5", "--out", str(out), "--cache-dir", str(real_index[2])]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reusing the cached index" in done.stderr, "the session's real-model index is reused, not rebuilt"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries"] == 5 and metrics["means"]["ndcg@10"] > 0.3
    assert "ndcg@10" in done.stdout and (out / "report.html").exists()


@pytest.mark.parametrize("make, reason", [(lambda d: d / "missing", "no such directory"), (lambda d: d, "no run.trec in it"),
                                          (lambda d: (d / "run.trec").write_text("q1 Q0 doc\n") and d, "expected 6 fields")])
def test_eval_compare_with_no_readable_previous_run_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, make, reason):
    import indexer.embedding as embedding
    from medkb.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before --compare was checked")

    monkeypatch.setattr(embedding, "load_embedder", no_model)
    previous = make(tmp_path)
    assert main(["eval", "--compare", str(previous), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"medkb eval: --compare {previous}: ") and reason in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

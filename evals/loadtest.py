"""A bounded load test of `medkb serve`: mixed /api/search and /api/ask traffic (new
questions and follow-ups) at 1, 8 and 32 concurrent clients, a soak, then a burst of large
requests near and over the body limit. Reports errors, p50/p95/p99 latency per phase and
the server's RSS over time (after the first 1,000 requests against the end: the target is
within 20%), and stops by itself.

    python -m evals.loadtest --minutes 10 --index-dir var/index [--out runs/loadtest.json]

The server is started here, on 127.0.0.1 only, with a conversation store (and an answer store) in a temporary
folder. Every simulated client comes from 127.0.0.1, so the per-address limit on new
conversations (MEDKB_CONVERSATION_STARTS_PER_MINUTE) is lifted for the run unless
--keep-start-limit is given; 429s are then counted apart from errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.bench import gold_queries, percentiles, rss_mb
from evals.pipeline import machine
from evals.server_process import free_port, stop, wait_until_serving

REPO = Path(__file__).resolve().parent.parent
FOLLOW_UPS = ["how is it treated?", "what tests confirm it?", "what about in pregnancy?", "and in children?", "what are the risks?"]
FILTERS = [{}, {"review_status": ["under_review", "submitted"]}, {"evidence_kind": ["guideline"]}, {"audience": ["clinician"]}]


@dataclass
class Recorder:
    """Every request's outcome, by phase, and the server's RSS over time."""

    pid: int
    started: float = field(default_factory=time.monotonic)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    total: int = 0
    rss: list[tuple[float, int, float, int]] = field(default_factory=list)  # (seconds, requests so far, MB, server threads)
    rss_at_1000: float | None = None

    def record(self, phase: str, op: str, status: int | str, ms: float, expected: tuple[int, ...] = (200,)) -> None:
        key = f"{phase} {op}"
        self.latencies[key].append(ms)
        self.statuses[key][status] += 1
        self.total += 1
        if status == 429:
            return  # a refusal by design, counted apart
        if status not in expected:
            self.errors[key].append(str(status))

    def sample(self) -> float:
        mb = rss_mb(self.pid)
        self.rss.append((round(time.monotonic() - self.started, 1), self.total, round(mb, 1), _threads(self.pid)))
        if self.rss_at_1000 is None and self.total >= 1000:
            self.rss_at_1000 = mb
        return mb


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def start_server(index_dir: Path, workdir: Path, keep_start_limit: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, MEDKB_CONVERSATIONS_DB=str(workdir / "conversations.sqlite"), MEDKB_ANSWERS_DB=str(workdir / "answers.sqlite"))
    if not keep_start_limit:
        env["MEDKB_CONVERSATION_STARTS_PER_MINUTE"] = "0"
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "medkb.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--index-dir", str(Path(index_dir).resolve()), "--log-level", "warning"],  # absolute: it starts in the repository
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, base: str, workdir: Path, timeout: float = 180) -> None:
    """Until the server started by `start_server` answers /healthz (ServerDidNotStart if it exits first)."""
    wait_until_serving(base, {"server": (proc, lambda: (workdir / "server.log").read_text(errors="replace"))}, timeout)


async def _request(client, rec: Recorder, phase: str, op: str, method: str, url: str, expected=(200,), **kwargs):
    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kwargs)
        status: int | str = response.status_code
    except Exception as exc:  # noqa: BLE001 - a transport failure is an error of the run, recorded by type
        response, status = None, type(exc).__name__
    rec.record(phase, op, status, (time.perf_counter() - started) * 1000, expected)
    return response


async def mixed_client(client, rec: Recorder, phase: str, until: float, queries: list[str], rng: random.Random, ask_share: float) -> None:
    """One user: searches, and asks (`ask_share` of its requests), following up on its own conversation now and then."""
    conversation: str | None = None
    turns = 0
    while time.monotonic() < until:
        if rng.random() >= ask_share:
            params: dict[str, Any] = {"q": rng.choice(queries), "k": rng.choice((5, 10))}
            params.update({k: v for k, v in rng.choice(FILTERS).items()})
            await _request(client, rec, phase, "search", "GET", "/api/search", params=params)
            continue
        follow = conversation is not None and turns < 4 and rng.random() < 0.5
        body: dict[str, Any] = {"question": rng.choice(FOLLOW_UPS) if follow else rng.choice(queries)}
        if follow:
            body["conversation_id"] = conversation
        response = await _request(client, rec, phase, "ask-follow-up" if follow else "ask", "POST", "/api/ask", json=body)
        if response is not None and response.status_code == 200:
            conversation = response.json().get("conversation_id")
            turns = turns + 1 if follow else 1
        else:
            conversation, turns = None, 0


async def run_phase(base: str, rec: Recorder, phase: str, clients: int, seconds: float, queries: list[str], seed: int, ask_share: float) -> None:
    import httpx

    until = time.monotonic() + seconds

    async def user(i: int) -> None:
        # Its own connection, as each user's browser has (one httpx client shared by many tasks
        # queues some requests for seconds inside httpx, which would read as server latency).
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            await mixed_client(client, rec, phase, until, queries, random.Random(seed * 1000 + i), ask_share)

    await asyncio.gather(*(user(i) for i in range(clients)))


async def run_burst(base: str, rec: Recorder, limit: int, max_query_chars: int, rounds: int) -> None:
    """Large bodies from 32 clients at once: just under the limit (refused by validation, 422),
    just over it (413) and 5 MB (413); then normal requests must still work."""
    import httpx

    under = json.dumps({"question": "x" * (limit - 200)}).encode()
    history = json.dumps({"question": "iron deficiency", "history": ["y" * max_query_chars] * 20}).encode()
    over = b'{"question": "' + b"z" * (limit + 1024) + b'"}'
    huge = b"w" * 5_000_000
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        for _ in range(rounds):
            jobs = []
            for i in range(32):
                body, op, expected = [(under, "near-limit", (422,)), (history, "long-history", (200, 422)),
                                      (over, "over-limit", (413,)), (huge, "5MB", (413,))][i % 4]
                jobs.append(_request(client, rec, "burst", op, "POST", "/api/ask", expected=expected, content=body, headers=headers))
            await asyncio.gather(*jobs)
        for _ in range(20):
            await _request(client, rec, "after burst", "search", "GET", "/api/search", params={"q": "causes of chronic microcytosis"})


async def sampler(rec: Recorder, stop: asyncio.Event, every: float = 1.0) -> None:
    while not stop.is_set():
        rec.sample()
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


async def run(base: str, rec: Recorder, minutes: float, queries: list[str], limit: int, max_query_chars: int, ask_share: float,
              log, soak_minutes: float | None = None) -> list[dict[str, Any]]:
    """Run the phases in order; each phase's seconds are its share of `minutes`, except the soak's,
    which is `soak_minutes` when given (so a 10-minute soak does not need 22 minutes of traffic)."""
    budget = minutes * 60
    soak_share = 0.45 if soak_minutes is None else soak_minutes * 60 / budget
    plan = [("1 client", 1, 0.15), ("8 clients", 8, 0.15), ("32 clients", 32, 0.15), ("soak, 8 clients", 8, soak_share)]
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler(rec, stop))
    phases = []
    try:
        for seed, (name, clients, share) in enumerate(plan):
            before = rec.total
            started = time.monotonic()
            await run_phase(base, rec, name, clients, budget * share, queries, seed, ask_share)
            took = time.monotonic() - started
            phases.append({"phase": name, "clients": clients, "seconds": round(took, 1), "requests": rec.total - before,
                           "requests_per_s": round((rec.total - before) / took, 1), "rss_mb": round(rec.sample(), 1)})
            log(f"  {name}: {phases[-1]['requests']} requests in {took:.0f} s, server RSS {phases[-1]['rss_mb']} MB")
        rss_before = rec.sample()
        started = time.monotonic()
        await run_burst(base, rec, limit, max_query_chars, rounds=max(1, int(budget * 0.1 / 3)))
        phases.append({"phase": "burst of large bodies", "clients": 32, "seconds": round(time.monotonic() - started, 1),
                       "rss_mb_before": round(rss_before, 1), "rss_mb": round(rec.sample(), 1)})
        log(f"  burst: server RSS {rss_before:.1f} -> {phases[-1]['rss_mb']} MB")
    finally:
        stop.set()
        await sampling
    return phases


def summarise(rec: Recorder, phases: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for key in rec.latencies:
        lat = percentiles(rec.latencies[key])
        rows.append({"what": key, "requests": len(rec.latencies[key]), "errors": len(rec.errors[key]),
                     "statuses": {str(k): v for k, v in sorted(rec.statuses[key].items(), key=str)}, **lat,
                     "error_kinds": dict(Counter(rec.errors[key]))})
    end = rec.rss[-1][2] if rec.rss else 0.0
    at_1000 = rec.rss_at_1000
    return {"phases": phases, "requests": rows, "total_requests": rec.total, "total_errors": sum(r["errors"] for r in rows),
            "rss_mb_after_1000_requests": round(at_1000, 1) if at_1000 else None, "rss_mb_at_end": end,
            "rss_growth_after_1000": round((end - at_1000) / at_1000, 3) if at_1000 else None,
            "rss_samples": rec.rss, "machine": machine()}


def format_report(result: dict[str, Any]) -> str:
    lines = [f"{'phase / request':<36} {'n':>6} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}  statuses"]
    for r in result["requests"]:
        lines.append(f"{r['what']:<36} {r['requests']:>6} {r['errors']:>6} {r['p50']:>9.1f} {r['p95']:>9.1f} {r['p99']:>9.1f}  {r['statuses']}")
    for p in result["phases"]:
        if "requests_per_s" in p:
            lines.append(f"{p['phase']}: {p['requests_per_s']} requests/s over {p['seconds']} s")
    growth = result["rss_growth_after_1000"]
    if result["rss_samples"]:
        lines.append(f"server threads at the end: {result['rss_samples'][-1][3]}")
    lines.append(f"requests {result['total_requests']}, errors {result['total_errors']}; server RSS after the first 1,000 requests "
                 f"{result['rss_mb_after_1000_requests']} MB, at the end {result['rss_mb_at_end']} MB"
                 + (f" ({growth:+.1%}; target within 20%: {'met' if abs(growth) <= 0.2 else 'NOT met'})" if growth is not None else
                    " (fewer than 1,000 requests: run longer)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="total duration of the traffic (the server's start-up is extra)")
    parser.add_argument("--index-dir", type=Path, default=Path("var/index"), help="a published index (medkb index ... --index-dir)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep-start-limit", action="store_true", help="keep the per-address limit on new conversations")
    parser.add_argument("--soak-minutes", type=float,
                        help="length of the 8-client soak (default: 45%% of --minutes; the other phases keep their shares)")
    parser.add_argument("--ask-share", type=float, default=0.45, help="share of requests that are /api/ask (the rest are /api/search)")
    args = parser.parse_args(argv)
    if not args.minutes > 0 or (args.soak_minutes is not None and not args.soak_minutes > 0) or not 0 <= args.ask_share <= 1:
        parser.error("--minutes and --soak-minutes must be more than 0, and --ask-share between 0 and 1")
    if args.out:
        try:  # before the run, not after its ten minutes
            args.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--out {args.out}: cannot make its folder: {exc.strerror or exc}")

    from medkb.settings import Settings

    settings = Settings.from_env()
    queries = gold_queries()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="medkb-loadtest-") as tmp:
        workdir = Path(tmp)
        proc, base = start_server(args.index_dir, workdir, args.keep_start_limit)
        try:
            log(f"starting medkb serve on {base} ...")
            wait_ready(proc, base, workdir)
            rec = Recorder(pid=proc.pid)
            log(f"ready; server RSS {rec.sample():.1f} MB idle; {args.minutes} min of traffic"
                + (f", soak {args.soak_minutes} min" if args.soak_minutes else ""))
            phases = asyncio.run(run(base, rec, args.minutes, queries, settings.max_body_bytes, settings.max_query_chars,
                                     args.ask_share, log, soak_minutes=args.soak_minutes))
            result = summarise(rec, phases)
            alive = proc.poll() is None
        finally:
            stop(proc)
        result["server_alive_at_end"] = alive
        print(format_report(result))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2))
            log(f"figures written to {args.out}")
    return 0 if result["total_errors"] == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())

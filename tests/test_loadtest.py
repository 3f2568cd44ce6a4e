"""The load test's bookkeeping (the run itself needs the real model and minutes: `python -m evals.loadtest`)."""

import os

from evals.loadtest import Recorder, format_report, summarise


def test_errors_latencies_and_memory_are_counted():
    rec = Recorder(pid=os.getpid())
    for i in range(1000):
        rec.record("soak", "search", 200, float(i))
    rec.record("soak", "ask", 500, 10.0)
    rec.record("soak", "ask", "ReadError", 10.0)
    rec.record("soak", "ask", 429, 1.0)  # a refusal by design, not an error
    rec.record("burst", "over-limit", 413, 3.0, expected=(413,))
    rec.sample()
    result = summarise(rec, [])
    rows = {r["what"]: r for r in result["requests"]}
    assert rows["soak search"]["requests"] == 1000 and rows["soak search"]["errors"] == 0
    assert 490 <= rows["soak search"]["p50"] <= 510 and rows["soak search"]["p99"] >= 980
    assert rows["soak ask"]["errors"] == 2 and rows["soak ask"]["error_kinds"] == {"500": 1, "ReadError": 1}
    assert rows["burst over-limit"]["errors"] == 0
    assert result["total_errors"] == 2 and result["rss_mb_after_1000_requests"] > 0
    report = format_report(result)
    assert "errors 2" in report and "target within 20%: met" in report

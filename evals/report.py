"""Evaluation reports in markdown and in self-contained HTML (plots inlined), viewable offline."""

from __future__ import annotations

import base64
import html
import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.metrics import HEADLINE, METRICS

JUDGED_NOTE = ("judged@10 is the share of the top 10 that has any judgment (ir_measures' Judged@10, 1 - BEIR's Hole@10); "
               "the other metrics count an unjudged unit as not relevant, so where judged@10 is low they understate the ranking.")


@dataclass
class Comparison:
    baseline: str
    baseline_means: dict[str, float]
    deltas: dict[str, float]  # per query, headline metric: this run minus baseline
    p_value: float | None


def compare(per_query: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]], baseline_name: str) -> Comparison:
    from evals.metrics import means

    common = sorted(set(per_query) & set(baseline))
    deltas = {q: per_query[q][HEADLINE] - baseline[q][HEADLINE] for q in common}
    p_value = None
    try:
        from scipy.stats import ttest_rel

        if len(common) > 1 and any(deltas.values()):
            p_value = float(ttest_rel([per_query[q][HEADLINE] for q in common], [baseline[q][HEADLINE] for q in common]).pvalue)
    except ImportError:  # scipy is optional: the deltas stand on their own
        pass
    return Comparison(baseline_name, means({q: baseline[q] for q in common}), deltas, p_value)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plots(per_query: dict[str, dict[str, float]], comparison: Comparison | None) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    values = [v[HEADLINE] for v in per_query.values()]
    axes[0].hist(values, bins=20, range=(0, 1), color="#2b6cb0")
    axes[0].set_title(f"per-query {HEADLINE}")
    axes[0].set_xlabel(HEADLINE)
    axes[0].set_ylabel("queries")
    axes[1].boxplot([[v[m] for v in per_query.values()] for m in METRICS], tick_labels=list(METRICS))
    axes[1].set_title("per-query distribution of each metric")
    axes[1].tick_params(axis="x", rotation=30)
    out["per_query.png"] = _png(fig)
    plt.close(fig)
    if comparison and comparison.deltas:
        deltas = sorted(comparison.deltas.values(), reverse=True)
        fig, ax = plt.subplots(figsize=(10, 3.2))
        ax.bar(range(len(deltas)), deltas, color=["#2f855a" if d > 0 else "#c53030" if d < 0 else "#a0aec0" for d in deltas], width=1.0)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(f"per-query {HEADLINE} difference against {comparison.baseline} (sorted)")
        ax.set_xlabel("queries")
        ax.set_ylabel("difference")
        out["compare.png"] = _png(fig)
        plt.close(fig)
    return out


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def write_reports(out_dir: Path, title: str, info: dict[str, Any], mean: dict[str, float], per_query: dict[str, dict[str, float]],
                  queries: dict[str, str], tags: dict[str, list[str]], resolved: dict[str, str], latency_ms: dict[str, float],
                  comparison: Comparison | None) -> None:
    images = plots(per_query, comparison)
    for name, data in images.items():
        (out_dir / name).write_bytes(data)
    lat = sorted(latency_ms.values())
    lat_line = f"query latency (in-process, ms): p50 {statistics.median(lat):.1f}, p95 {lat[int(0.95 * (len(lat) - 1))]:.1f}" if lat else ""

    by_tag: dict[str, list[str]] = {}
    for q, ts in tags.items():
        for t in ts:
            by_tag.setdefault(t, []).append(q)

    md = [f"# {title}", ""]
    md += [f"- {k}: {v}" for k, v in info.items()]
    md += ["", "## Overall", "", "| metric | value |" + (" baseline | difference |" if comparison else ""), "|---|---|" + ("---|---|" if comparison else "")]
    for m in METRICS:
        row = f"| {m} | {_fmt(mean[m])} |"
        if comparison:
            row += f" {_fmt(comparison.baseline_means[m])} | {mean[m] - comparison.baseline_means[m]:+.4f} |"
        md.append(row)
    md += ["", f"{len(per_query)} judged queries. {lat_line}", "", JUDGED_NOTE, ""]
    if comparison:
        helped = sum(d > 0 for d in comparison.deltas.values())
        hurt = sum(d < 0 for d in comparison.deltas.values())
        md += [f"Against `{comparison.baseline}`: {helped} queries helped, {hurt} hurt, {len(comparison.deltas) - helped - hurt} unchanged on {HEADLINE}"
               + (f" (paired t-test p = {comparison.p_value:.3g})." if comparison.p_value is not None else "."), "", "![difference](compare.png)", ""]
    if by_tag:
        md += ["## By tag", "", "| tag | queries | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
        for tag in sorted(by_tag):
            qs = by_tag[tag]
            md.append(f"| {tag} | {len(qs)} | " + " | ".join(_fmt(statistics.fmean(per_query[q][m] for q in qs)) for m in METRICS) + " |")
        md.append("")
    md += ["![per-query distribution](per_query.png)", "", "## Per query", "",
           "| query id | query | " + " | ".join(METRICS) + (" | Δ " + HEADLINE if comparison else "") + " |",
           "|---|---|" + "---|" * len(METRICS) + ("---|" if comparison else "")]
    for q in sorted(per_query, key=lambda q: (per_query[q][HEADLINE], q)):
        text = queries[q].replace("|", "\\|")
        if resolved.get(q) and resolved[q] != queries[q]:
            text += f" → {resolved[q]}".replace("|", "\\|")
        row = f"| {q} | {text} | " + " | ".join(_fmt(per_query[q][m]) for m in METRICS)
        if comparison:
            row += f" | {comparison.deltas.get(q, 0.0):+.4f}"
        md.append(row + " |")
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    # HTML: the same content, images inlined so the single file opens anywhere offline.
    def img(name: str) -> str:
        return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">' if name in images else ""

    rows = []
    for q in sorted(per_query, key=lambda q: (per_query[q][HEADLINE], q)):
        cells = "".join(f"<td>{_fmt(per_query[q][m])}</td>" for m in METRICS)
        delta = f"<td>{comparison.deltas.get(q, 0.0):+.4f}</td>" if comparison else ""
        shown = html.escape(queries[q]) + (f" <span class=r>→ {html.escape(resolved[q])}</span>" if resolved.get(q) and resolved[q] != queries[q] else "")
        rows.append(f"<tr><td>{html.escape(q)}</td><td>{shown}</td>{cells}{delta}</tr>")
    overall = "".join(
        f"<tr><th>{m}</th><td>{_fmt(mean[m])}</td>" + (f"<td>{_fmt(comparison.baseline_means[m])}</td><td>{mean[m] - comparison.baseline_means[m]:+.4f}</td>" if comparison else "") + "</tr>"
        for m in METRICS)
    tag_rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{len(qs)}</td>" + "".join(f"<td>{_fmt(statistics.fmean(per_query[q][m] for q in qs))}</td>" for m in METRICS) + "</tr>"
        for t, qs in sorted(by_tag.items()))
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;max-width:70rem;margin:1rem auto;padding:0 1rem}}table{{border-collapse:collapse;margin:.5rem 0}}
td,th{{border:1px solid #d8dee4;padding:.2rem .45rem;text-align:left}}img{{max-width:100%}}.r{{color:#666}}</style></head><body>
<h1>{html.escape(title)}</h1><ul>{''.join(f'<li>{html.escape(str(k))}: {html.escape(str(v))}</li>' for k, v in info.items())}</ul>
<h2>Overall</h2><table><tr><th>metric</th><th>value</th>{'<th>baseline</th><th>difference</th>' if comparison else ''}</tr>{overall}</table>
<p>{len(per_query)} judged queries. {html.escape(lat_line)}</p><p>{html.escape(JUDGED_NOTE)}</p>
{('<h2>Against ' + html.escape(comparison.baseline) + '</h2>' + img('compare.png')) if comparison else ''}
{('<h2>By tag</h2><table><tr><th>tag</th><th>queries</th>' + ''.join(f'<th>{m}</th>' for m in METRICS) + '</tr>' + tag_rows + '</table>') if by_tag else ''}
<h2>Distribution</h2>{img('per_query.png')}
<h2>Per query</h2><table><tr><th>id</th><th>query</th>{''.join(f'<th>{m}</th>' for m in METRICS)}{'<th>Δ ' + HEADLINE + '</th>' if comparison else ''}</tr>{''.join(rows)}</table>
</body></html>"""
    (out_dir / "report.html").write_text(page, encoding="utf-8")

"""Report text: every number of the verdict explained in words a reviewer understands.

Builds Markdown (for a pull-request comment) and a self-contained HTML page (plots inlined as
base64 PNG, no network needed) from a :class:`RunRecord`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

from meshlab.report.plots import PLOTS
from meshlab.report.record import RunRecord
from meshlab.report.result import Evidence, MetricSummary, RunResult

VERDICT_WORDS = {
    "promote": "PROMOTED: the candidate was shown to be within tolerance on every metric",
    "abort": "ABORTED: the candidate was shown to be worse than the baseline; traffic was rolled back",
    "inconclusive": "INCONCLUSIVE: the evidence did not settle the question before the limits",
}
EFFECT_WORDS = {
    "latency": "relative change of the p{q} latency (candidate / {ref} - 1)",
    "error-rate": "absolute change of the error rate (candidate - {ref}; errors are statuses other than 2xx, 3xx and spec.analysis.expectedStatuses; status 0, a transport failure, always)",
    "prediction-divergence": "share of requests on which the two versions' predictions differ",
}


def pct(value: float | str | None, digits: int = 3) -> str:
    """0.0123 -> '+1.23%'; the JSON forms of no value (None) and of unbounded ("inf", "-inf")."""
    if value is None:
        return "n/a"
    number = float(value)  # "inf" / "-inf" are how result JSON writes unbounded intervals
    if number in (float("inf"), float("-inf")):
        return "+inf" if number > 0 else "-inf"
    return f"{100 * number:+.{digits}g}%"


def _effect(m: MetricSummary) -> str:
    if m.type == "prediction-divergence" and "total-variation" in m.method:
        return (
            "total-variation distance between the two arms' prediction distributions "
            "(the largest share of requests whose predicted class would change)"
        )
    return str(EFFECT_WORDS.get(m.type, m.type)).format(q=_quantile_label(m), ref=_reference(m))


def _guarantees(r: RunResult) -> list[str]:
    reference = (
        "control" if any(m.comparison.endswith("control") for m in r.metrics) else "baseline"
    )
    lines = [
        f"Over every look of the run: P(abort) <= {r.alpha:g} if the candidate is no "
        f"worse than the {reference} on every metric; P(promote) <= {r.beta:g} if some "
        "metric is worse by at least its tolerance.",
        "",
    ]
    for m in r.metrics:
        if m.guarantee:
            lines.append(f"- {m.name} ({m.method}): {m.guarantee}")
    return lines


def _metric_sentence(m: MetricSummary) -> str:
    effect = _effect(m)
    reference = _reference(m)
    n = f"{m.n_baseline} {reference} and {m.n_candidate} candidate observations"
    head = f"**{m.name}** ({m.comparison}) — {effect}: estimate {pct(m.estimate)}, interval [{pct(m.lower)}, {pct(m.upper)}] from {n}; tolerance {pct(m.tolerance)}."
    if m.verdict == "fail" and m.abort_threshold:
        why = "The interval lies entirely above the tolerance, so the candidate is worse than allowed on this metric (abort)."
    elif m.verdict == "fail":
        why = f"The interval lies entirely above 0, so the candidate is worse than the {reference} on this metric (abort)."
    elif m.verdict == "pass" and m.upper is not None and m.upper >= m.tolerance:
        why = f"The upper bound fell below the tolerance at request {m.passed_at} and has moved since; a sequential bound holds at every look at once, so that pass stands (any degradation is smaller than what was declared acceptable)."
    elif m.verdict == "pass":
        why = "The whole interval lies below the tolerance, so any degradation is smaller than what was declared acceptable."
    elif not m.n_baseline or not m.n_candidate:
        why = "There was no data for this metric on one of the arms; no data is never a pass."
    else:
        why = "The interval still contains 0 and reaches above the tolerance, so neither conclusion is proven yet."
    return f"{head} {why}"


def _reference(m: MetricSummary) -> str:
    """The arm the candidate was compared with: "control" or "baseline"."""
    return m.comparison.rsplit(" ", 1)[-1]


def _quantile_label(m: MetricSummary) -> str:
    """The metric's own quantile (p90 for a p90 metric); the spec's default is the median."""
    q = m.quantile if m.quantile is not None else 0.5
    return f"{100 * q:g}"


def _steps_table(result: RunResult) -> list[str]:
    if not result.steps:
        return []
    control = any(s.control for s in result.steps)
    arms = "baseline / candidate / control" if control else "baseline / candidate"
    lines = [f"| step | routing | duration | requests {arms} | outcome |", "|---|---|---|---|---|"]
    for s in result.steps:
        counts = f"{s.baseline} / {s.candidate}" + (f" / {s.control}" if control else "")
        lines.append(f"| {s.step} | {s.label} | {s.duration_s:.1f} s | {counts} | {s.outcome} |")
    return lines


def statuses_text(statuses: Mapping[int, int]) -> str:
    """``200: 54, 500: 2`` (status code: count; 0 named as no answer)."""
    return ", ".join(
        f"{'no answer (0)' if code == 0 else code}: {n}" for code, n in sorted(statuses.items())
    )


def _evidence(e: Evidence) -> list[str]:
    out = ["", "## Evidence"]
    if e.warnings:
        out += ["", *(f"- **Warning:** {w}" for w in e.warnings)]
    expected = (
        f" (expected, not errors: {', '.join(map(str, e.expected_statuses))})"
        if e.expected_statuses
        else ""
    )
    out += [
        "",
        f"Status codes per arm{expected}; an error is any status but 2xx/3xx or an expected one, "
        "and no answer (0) always is:",
        "",
        "| arm | requests | status codes | errors | 4xx share | answers without a prediction |",
        "|---|---|---|---|---|---|",
    ]
    for a in e.arms:
        out.append(
            f"| {a.arm} | {a.requests} | {statuses_text(a.statuses) or '-'} | {a.errors} | "
            f"{100 * a.share_4xx:.3g}% | {a.no_prediction} ({100 * a.share_no_prediction:.3g}%) |"
        )
    out += [
        "",
        f"- predictions extracted at `{e.extractor or '(the whole body)'}`",
        f"- requests recorded: {e.recorded}; analysed: {e.analysed}; unattributed (no arm, "
        f"not recorded in samples.csv): {e.unattributed}",
    ]
    out += [f"- not analysed: {n} {reason}" for reason, n in e.not_analysed]
    if e.late:
        where = ", ".join(f"{source} {n}" for source, n in e.late)
        out.append(
            f"- late rows: {sum(n for _, n in e.late)} ({where}), fed to the statistics on arrival "
            "(they started before rows already handed on; counted, not re-sorted)"
        )
    if e.preflight:
        checked = sorted({f"{p.arm} ({p.via})" for p in e.preflight})
        codes = sorted({p.status for p in e.preflight})
        out.append(
            f"- pre-flight: {len(e.preflight)} payloads to {', '.join(checked)}; statuses "
            f"{', '.join(map(str, codes))}"
        )
    return out


def markdown(run: RunRecord, plot_links: dict[str, str] | None = None) -> str:
    """The report as Markdown; ``plot_links`` maps plot keys to image paths to embed."""
    r = run.result
    verdict = r.verdict
    out = [f"# meshlab report: {r.experiment or run.path.name}", ""]
    out.append(f"**{VERDICT_WORDS.get(verdict, verdict)}.**")
    if r.reason:
        out += ["", r.reason]
    out += [
        "",
        f"- strategy: {r.strategy or '?'}; target: {r.target}; exit code {r.exit_code}",
        f"- duration: {r.duration_s:.1f} s; requests: {len(run.samples)} recorded",
    ]
    if r.decided_after is not None:
        out.append(
            f"- decided after {r.decided_after.requests} requests, "
            f"{r.decided_after.seconds:.1f} s after the first request"
        )
    rb = r.rollback
    if rb:
        out.append(
            f"- rollback: the last candidate-served request ended {rb.get('decision_to_last_candidate_ms', 0):.0f} ms "
            f"after the decision (routes applied in {rb.get('apply_ms', 0):.0f} ms)"
        )
    out += ["", "## Metrics", ""]
    out += [f"- {_metric_sentence(m)}" for m in r.metrics]
    if r.metrics:
        out += ["", "## What the numbers guarantee", "", *_guarantees(r)]
    if r.approximation:
        out += ["", f"_Approximation: {r.approximation}_"]
    if r.evidence is not None:
        out += _evidence(r.evidence)
    if r.collector is not None:
        out += r.collector.lines()
    table = _steps_table(r)
    if table:
        out += ["", "## Steps", "", *table]
    if plot_links:
        out += ["", "## Plots", ""]
        out += [f"![{PLOTS[k][0]}]({v})" for k, v in plot_links.items()]
    out += [
        "",
        f"Run directory: `{run.path}` (samples.csv, manifests/, events.jsonl, result.json).",
    ]
    return "\n".join(out) + "\n"


def _md_to_html(text: str) -> str:
    """The small Markdown subset the report uses (headings, bullets, tables, bold, code)."""
    import re

    lines, out, in_list, in_table = text.splitlines(), [], False, False
    for line in lines:
        esc = html.escape(line)
        esc = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", esc)
        esc = re.sub(r"`(.+?)`", r"<code>\1</code>", esc)
        esc = re.sub(r"_(Approximation:.+?)_", r"<em>\1</em>", esc)
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if in_table and not line.startswith("|"):
            out.append("</table>")
            in_table = False
        if line.startswith("# "):
            out.append(f"<h1>{esc[2:]}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{esc[3:]}</h2>")
        elif line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{esc[2:]}</li>")
        elif line.startswith("|"):
            if set(line) <= {"|", "-"}:
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            cells = [c.strip() for c in esc.strip("|").split("|")]
            out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
        elif line.strip():
            out.append(f"<p>{esc}</p>")
    if in_list:
        out.append("</ul>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}code{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}h2{border-bottom:1px solid #ddd}"""


def html_page(run: RunRecord, pngs: dict[str, bytes]) -> str:
    """A self-contained HTML report: text plus every plot inlined."""
    body = _md_to_html(markdown(run))
    figures = "".join(
        f"<h3>{html.escape(PLOTS[k][0])}</h3><img alt='{html.escape(PLOTS[k][0])}' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for k, png in pngs.items()
    )
    title = html.escape(f"meshlab report: {run.name}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body>{body}<h2>Plots</h2>{figures}</body></html>\n"
    )

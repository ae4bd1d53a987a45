"""The report's plots, drawn with matplotlib (Agg) from a :class:`RunRecord` into PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from meshlab.report.record import RunRecord
from meshlab.samples import BASELINE, CANDIDATE, CONTROL, Samples

COLORS = {BASELINE: "#1f77b4", CANDIDATE: "#d62728", CONTROL: "#2ca02c"}
ARM_NAMES = {BASELINE: "baseline", CANDIDATE: "candidate", CONTROL: "control"}


def _arms(s: Samples) -> tuple[int, ...]:
    """The arms with rows: baseline and candidate, and the control in a run with one."""
    return (
        (BASELINE, CANDIDATE, CONTROL) if bool((s.arm == CONTROL).any()) else (BASELINE, CANDIDATE)
    )


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return buffer.getvalue()


def _legend(ax: Axes, **kwargs: Any) -> None:
    """A legend only when something is labelled (a run with no steps or samples draws nothing)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _expected(run: RunRecord) -> tuple[int, ...]:
    evidence = run.result.evidence
    return evidence.expected_statuses if evidence is not None else ()


def _t0(run: RunRecord) -> float:
    return float(run.samples.timestamp.min()) if len(run.samples) else 0.0


def latency_ecdf(run: RunRecord) -> bytes:
    """Empirical CDF of latency per arm (successful requests), log-scaled."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    s = run.samples
    ok = ~s.errors(_expected(run))
    for arm in _arms(s):
        values = np.sort(s.latency_ms[ok & (s.arm == arm)])
        if values.size:
            ax.step(
                values,
                np.arange(1, values.size + 1) / values.size,
                where="post",
                color=COLORS[arm],
                label=f"{ARM_NAMES[arm]} (n={values.size})",
            )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("share of requests ≤ x")
    ax.set_title("Latency distribution per arm (ECDF)")
    ax.grid(alpha=0.3)
    _legend(ax, loc="lower right")
    return _png(fig)


def _bins(run: RunRecord, width: float) -> tuple[np.ndarray, np.ndarray]:
    rel = run.samples.timestamp - _t0(run)
    edges = np.arange(0.0, float(rel.max(initial=0.0)) + width, width)
    return rel, edges if edges.size > 1 else np.array([0.0, width])


def error_rate(run: RunRecord) -> bytes:
    """Error rate per arm over time (by the one rule, with the run's expected statuses)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    rel, edges = _bins(run, 5.0)
    for arm in _arms(run.samples):
        mask = run.samples.arm == arm
        total, _ = np.histogram(rel[mask], edges)
        errors, _ = np.histogram(rel[mask & run.samples.errors(_expected(run))], edges)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(total > 0, errors / np.maximum(total, 1), np.nan)
        ax.plot(edges[:-1], 100 * rate, color=COLORS[arm], label=ARM_NAMES[arm], marker=".")
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("errors (%)")
    ax.set_title("Error rate over time (5 s windows)")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _png(fig)


def metric_intervals(run: RunRecord) -> bytes:
    """Each metric's anytime-valid interval over time against its tolerance and zero."""
    names = [m.name for m in run.result.metrics]
    fig, axes = plt.subplots(
        len(names) or 1, 1, figsize=(7, 2.4 * max(1, len(names))), squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=False):
        points = [(h["time"], m) for h in run.history for m in h["metrics"] if m["name"] == name]
        points = [(t, m) for t, m in points if m.get("interval") and None not in m["interval"]]
        tolerance = next(m.tolerance for m in run.result.metrics if m.name == name)
        if points:
            t = np.array([p[0] for p in points])
            lo = np.array([p[1]["interval"][0] for p in points], dtype=float)
            hi = np.array([p[1]["interval"][1] for p in points], dtype=float)
            est = np.array([p[1].get("estimate") or np.nan for p in points], dtype=float)
            finite = np.abs(est[np.isfinite(est)])
            span = max(abs(tolerance) * 4, 2 * float(finite.max(initial=0.0)), 1e-9)
            ax.fill_between(
                t,
                np.clip(lo, -span, span),
                np.clip(hi, -span, span),
                alpha=0.3,
                color="#7f7f7f",
                label="interval",
            )
            ax.plot(t, est, color="black", lw=1, label="estimate")
        ax.axhline(tolerance, color="#d62728", ls="--", lw=1, label=f"tolerance {_pct(tolerance)}")
        ax.axhline(0, color="#2ca02c", lw=1, label="no difference")
        ax.set_title(name)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_xlabel("seconds since start")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7, loc="upper right")
    return _png(fig)


def weight_timeline(run: RunRecord) -> bytes:
    """Candidate weight and mirror percent over the experiment, from the applied steps."""
    fig, ax = plt.subplots(figsize=(7, 2.6))
    applied = [e for e in run.events if e.get("event") == "step-applied"]
    if applied:
        start = applied[0]["time"]
        end = max(e["time"] for e in run.events)
        t = [e["time"] - start for e in applied] + [end - start]
        weight = [e.get("weight", 0) for e in applied]
        mirror = [e.get("mirror", 0) for e in applied]
        ax.step(
            t,
            [*weight, weight[-1]],
            where="post",
            color=COLORS[CANDIDATE],
            label="candidate weight %",
        )
        if any(mirror):
            ax.step(
                t, [*mirror, mirror[-1]], where="post", color="#9467bd", ls="--", label="mirror %"
            )
        for e in applied:
            ax.annotate(str(e.get("step")), (e["time"] - start, e.get("weight", 0)), fontsize=7)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("%")
    ax.set_title("Traffic to the candidate over time")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=8)
    return _png(fig)


def prediction_disagreement(run: RunRecord) -> bytes:
    """Shadow: cumulative share of paired requests whose predictions differ. Canary: class shares."""
    fig, ax = plt.subplots(figsize=(7, 3.0))
    s = run.samples
    if s.mirrored.any():
        primary = {
            rid: p
            for rid, p, m, a in zip(s.request_id, s.prediction, s.mirrored, s.arm, strict=True)
            if not m and a == BASELINE and p is not None
        }
        for arm in _arms(s)[1:]:  # the candidate's copies, and the control's (its floor)
            pairs = [
                (t, primary[rid] != p)
                for t, rid, p, m, a in zip(
                    s.timestamp, s.request_id, s.prediction, s.mirrored, s.arm, strict=True
                )
                if m and a == arm and p is not None and rid in primary
            ]
            if pairs:
                t = np.array([p[0] for p in pairs]) - _t0(run)
                differ = np.cumsum([p[1] for p in pairs]) / np.arange(1, len(pairs) + 1)
                ax.plot(t, 100 * differ, color=COLORS[arm], label=ARM_NAMES[arm])
        if len(_arms(s)) > 2:
            _legend(ax)
        ax.set_ylabel("pairs that disagree (%)")
        ax.set_xlabel("seconds since start")
        ax.set_title("Prediction disagreement, shadow vs primary (cumulative)")
    else:
        arms = _arms(s)
        keys: dict[str, list[int]] = {}
        for arm, p in zip(s.arm, s.prediction, strict=True):
            if p is not None:
                keys.setdefault(str(p), [0, 0, 0])[int(arm)] += 1
        labels = sorted(keys)[:20]
        totals = [max(1, sum(keys[k][a] for k in keys)) for a in (0, 1, 2)]
        x = np.arange(len(labels))
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            ax.bar(
                x + (i - (len(arms) - 1) / 2) * width,
                [100 * keys[k][arm] / totals[arm] for k in labels],
                width=width,
                color=COLORS[arm],
                label=ARM_NAMES[arm],
            )
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel("share of predictions (%)")
        ax.set_title("Prediction distribution per arm")
        _legend(ax)
    ax.grid(alpha=0.3)
    return _png(fig)


def _pct(value: float) -> str:
    return f"{100 * value:.3g}%"


PLOTS: dict[str, tuple[str, Callable[[RunRecord], bytes]]] = {
    "weights": ("Traffic to the candidate", weight_timeline),
    "intervals": ("Metric intervals against tolerances", metric_intervals),
    "latency": ("Latency per arm", latency_ecdf),
    "errors": ("Error rate over time", error_rate),
    "predictions": ("Predictions", prediction_disagreement),
}
__all__ = ["PLOTS", "Axes"]

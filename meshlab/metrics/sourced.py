"""One comparison whose metrics read different sources of the merged stream (pure; no I/O).

With ``metrics.source: prometheus`` and the collector in one shadow test, the run's one ordered
merge carries two kinds of rows: Prometheus's pseudo-samples (request ids ``prom-N``, latencies at
histogram bucket bounds, no predictions) and raw rows (the load generator's primaries and the
collector's shadow rows, which carry the predictions). Fed to one comparison, every request would
count twice in latency and errors. :class:`SourcedComparison` splits the analysis by metric:

* ``latency`` and ``error-rate`` read the pseudo-samples, in a
  :class:`~meshlab.metrics.bracket.BracketedComparison` (decides only when the verdict holds
  wherever in its bucket each request fell);
* ``prediction-divergence`` reads the raw rows, in a :class:`~meshlab.stats.comparison.Comparison`
  (pairs by request id).

Error budget, as in one :class:`~meshlab.stats.comparison.Comparison` over all ``k`` metrics: each
part gets ``alpha * k_part / k``, so every metric's abort side still has ``alpha / k``
(Bonferroni over all ``k``), and its promote side the full ``beta``. The verdict is
:func:`meshlab.stats.results.decide` over every metric's result, in the spec's order.
:attr:`SourcedComparison.fed_by` says which source fed which metric (:func:`fed_by_line` as
the report's one line).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from meshlab.metrics.bracket import BracketedComparison
from meshlab.samples import Samples
from meshlab.spec.analysis import Analysis
from meshlab.stats.comparison import Comparison, Mode
from meshlab.stats.results import Assessment, Decision, decide

PSEUDO_PREFIX = "prom-"  # the request ids PrometheusMetrics gives its pseudo-samples
FROM_PROMETHEUS = ("latency", "error-rate")


def pseudo_mask(batch: Samples) -> npt.NDArray[np.bool_]:
    """Per row: True for a Prometheus pseudo-sample."""
    return np.asarray(np.char.startswith(batch.request_id.astype(np.str_), PSEUDO_PREFIX))


def _part(analysis: Analysis, types: Sequence[str], keep: bool) -> Analysis | None:
    metrics = [m for m in analysis.metrics if (m.type in types) == keep]
    if not metrics:
        return None
    share = analysis.alpha * len(metrics) / len(analysis.metrics)
    return analysis.model_copy(update={"metrics": metrics, "alpha": share})


class SourcedComparison:
    """Latency and errors from Prometheus's pseudo-samples, divergence from the raw rows."""

    sourced = True  # what StatsAnalyzer checks before it feeds mixed rows

    def __init__(
        self,
        analysis: Analysis,
        mode: Mode = "shadow",
        *,
        bounds: Sequence[float] | Callable[[], Sequence[float]],
        source: str = "Prometheus",
        raw: str = "the load generator's primaries and the collector's shadow predictions",
        control: bool = False,
    ) -> None:
        self.analysis = analysis
        self.mode = mode
        prom = _part(analysis, FROM_PROMETHEUS, True)
        rest = _part(analysis, FROM_PROMETHEUS, False)
        self.prometheus = (
            BracketedComparison(prom, mode, bounds=bounds, control=control)
            if prom is not None
            else None
        )
        self.raw = Comparison(rest, mode, control=control) if rest is not None else None
        self.fed_by = {
            m.name: source if m.type in FROM_PROMETHEUS else raw for m in analysis.metrics
        }
        self.decision: Decision | None = None
        self._first: float | None = None
        self._last = 0.0
        self._n = 0

    def update(self, batch: Samples) -> None:
        """Add rows of both kinds; each part takes its own."""
        if len(batch) == 0:
            return
        first, last = float(batch.timestamp.min()), float(batch.timestamp.max())
        self._first = first if self._first is None else min(self._first, first)
        self._last = max(self._last, last)
        self._n += len(batch)
        pseudo = pseudo_mask(batch)
        if self.prometheus is not None and pseudo.any():
            self.prometheus.update(batch.take(pseudo))
        if self.raw is not None and (~pseudo).any():
            self.raw.update(batch.take(~pseudo))

    def assess(self) -> Assessment:
        """Every metric's result from its part, the verdict over all of them."""
        parts = [p.assess() for p in (self.prometheus, self.raw) if p is not None]
        by_name = {r.name: r for a in parts for r in a.metrics}
        results = tuple(by_name[m.name] for m in self.analysis.metrics)
        verdict = decide(results)
        if self.decision is None and verdict.outcome != "inconclusive":
            start = self._first if self._first is not None else self._last
            self.decision = Decision(verdict.outcome, self._n - 1, self._last - start)
        return dataclasses.replace(
            parts[0],
            verdict=verdict,
            metrics=results,
            n_samples=self._n,
            decision=self.decision,
            warnings=tuple(w for a in parts for w in a.warnings),
        )


def fed_by_line(analysis: Analysis, source: str = "Prometheus") -> str:
    """Which source feeds which metric with Prometheus and the collector together, in one line."""
    prom = [m.name for m in analysis.metrics if m.type in FROM_PROMETHEUS]
    rest = [m.name for m in analysis.metrics if m.type not in FROM_PROMETHEUS]
    parts = []
    if prom:
        parts.append(
            f'{", ".join(prom)}: both arms from {source} (reporter="destination" series, where '
            "mirrored requests appear)"
        )
    if rest:
        parts.append(
            f"{', '.join(rest)}: the primary's predictions from the load generator, the shadow's "
            "from the collector"
        )
    return "metrics fed by source: " + "; ".join(parts)

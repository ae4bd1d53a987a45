"""The ``analysis`` and ``limits`` sections: which metrics decide, with what error guarantees, how long.

``alpha`` bounds the probability of aborting a candidate that is no worse than the reference arm on
every metric; ``beta`` bounds the probability of promoting a candidate that is worse by at least a
metric's tolerance. The reference arm is the baseline, or the control when ``spec.control`` is set
(same share of traffic, same age as the candidate; issue 13). Prediction divergence aborts only
beyond its tolerance unless ``abortOn: worse`` is set (see :class:`Metric`). Both hold over every look of a live run (see :mod:`meshlab.stats`).

``expectedStatuses`` lists HTTP statuses that are answers, not errors, for this traffic (e.g.
``[400]`` when some payloads are meant to be rejected). Every other status outside 2xx/3xx is an
error, and status 0 (a transport failure) always is (:func:`meshlab.samples.is_error_status`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import DnsLabel, Duration, Fraction, StrictModel

MetricType = Literal["latency", "error-rate", "prediction-divergence"]
AbortOn = Literal["worse", "beyond-tolerance"]
Method = Literal["sequential", "fixed-horizon"]


class Metric(StrictModel):
    """One compared metric and the tolerance within which the candidate counts as no worse.

    ``abort_on: worse`` aborts once the metric is shown worse than the reference arm (its
    interval excludes 0); ``beyond-tolerance`` aborts only once it is shown worse than the
    tolerance. Defaults (issue 13): ``worse`` for latency and error rate; ``beyond-tolerance`` for
    prediction divergence. Divergence is a distance with an unknown floor (nondeterministic
    inference and ties make a model disagree with itself on some requests, and any genuinely new
    model differs a little), so "no worse than baseline" cannot mean "zero divergence": a
    candidate identical to the baseline whose predictions flip on 0.1% of requests would be
    aborted. Without a control arm the divergence judged is the raw one, floor included, and
    the tolerance must leave room for the floor; with a control (``spec.control``) it is the
    candidate's divergence minus the control's, i.e. above the measured floor
    (:mod:`meshlab.stats.comparison`). Set ``abortOn: worse`` explicitly to abort on any shown
    excess (sensible with a control).
    ``epsilon``: numeric predictions closer than this count as equal (divergence only).
    """

    name: DnsLabel
    type: MetricType
    tolerance: Fraction
    quantile: float | None = Field(default=None, gt=0, lt=1)
    epsilon: float = Field(default=0.0, ge=0)
    abort_on: AbortOn = "worse"

    @model_validator(mode="after")
    def _per_type(self) -> Metric:
        if self.type == "prediction-divergence" and "abort_on" not in self.model_fields_set:
            object.__setattr__(self, "abort_on", "beyond-tolerance")
        if self.type == "latency":
            if self.quantile is None:
                object.__setattr__(self, "quantile", 0.5)
        elif self.quantile is not None:
            raise PydanticCustomError(
                "metric", "'quantile' only applies to type latency", {"subpath": ".quantile"}
            )
        if self.type != "latency" and self.tolerance >= 1:
            raise PydanticCustomError(
                "metric",
                "{t} is not below 100%; {type} tolerances are absolute rates like '0.5%'",
                {"t": f"{self.tolerance:.4g}", "type": self.type, "subpath": ".tolerance"},
            )
        return self


def _default_metrics() -> list[Metric]:
    return [
        Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.10),
        Metric(name="errors", type="error-rate", tolerance=0.01),
    ]


class Analysis(StrictModel):
    """Error budget and metrics of the statistical comparison."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    beta: float = Field(default=0.05, gt=0, lt=0.5)
    method: Method = "sequential"
    metrics: list[Metric] = Field(default_factory=_default_metrics, min_length=1)
    expected_statuses: list[int] = Field(default_factory=list)

    @field_validator("expected_statuses")
    @classmethod
    def _real_statuses(cls, value: list[int]) -> list[int]:
        for i, code in enumerate(value):
            if code == 0:
                raise PydanticCustomError(
                    "metric",
                    "0 means a transport failure (no response), which is always an error; remove it",
                    {"subpath": f"[{i}]"},
                )
            if not 400 <= code <= 599:
                raise PydanticCustomError(
                    "metric",
                    "{c} is not a 4xx or 5xx status; 2xx and 3xx are never errors, so list only "
                    "the 4xx/5xx answers your payloads are meant to get",
                    {"c": code, "subpath": f"[{i}]"},
                )
        return sorted(set(value))

    @model_validator(mode="after")
    def _unique_names(self) -> Analysis:
        seen: set[str] = set()
        for i, metric in enumerate(self.metrics):
            if metric.name in seen:
                raise PydanticCustomError(
                    "metric",
                    "duplicate metric name '{n}'; give each metric its own name",
                    {"n": metric.name, "subpath": f".metrics[{i}].name"},
                )
            seen.add(metric.name)
        return self


class Limits(StrictModel):
    """When a step or the whole experiment stops waiting for a decision."""

    min_samples: int = Field(default=200, ge=1)
    max_duration: Duration = 120.0
    experiment_max_duration: Duration = 1800.0
    on_inconclusive: Literal["rollback", "promote", "hold"] = "rollback"

"""The root of the spec: ``Experiment`` (``apiVersion: meshlab.io/v1alpha1``, ``kind: Experiment``)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.analysis import Analysis, Limits
from meshlab.spec.base import DnsLabel, StrictModel
from meshlab.spec.control import Control, control_errors
from meshlab.spec.load import Load
from meshlab.spec.local import Local
from meshlab.spec.metrics import BY_WORKLOAD
from meshlab.spec.routing import ABTest, BlueGreen, Canary, Service, Shadow, Strategy, Version
from meshlab.spec.target import MetricsSource, Notifications, Target


class Metadata(StrictModel):
    """Name and namespace of the experiment; the name also names meshlab's routes."""

    name: DnsLabel
    namespace: DnsLabel = "default"
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ExperimentSpec(StrictModel):
    """What is tested, how traffic is split, and how the comparison decides."""

    strategy: Strategy
    service: Service
    baseline: Version
    candidate: Version
    control: Control | None = None
    canary: Canary | None = None
    shadow: Shadow | None = None
    bluegreen: BlueGreen | None = None
    abtest: ABTest | None = None
    then: Literal["canary"] | None = None
    analysis: Analysis = Analysis()
    limits: Limits = Limits()
    load: Load = Load()
    local: Local | None = None
    target: Target = Target()
    metrics: MetricsSource = MetricsSource()
    notifications: Notifications = Notifications()

    @model_validator(mode="after")
    def _coherent(self) -> ExperimentSpec:
        block = getattr(self, self.strategy)
        if block is None and self.strategy in ("canary", "abtest"):
            example = (
                "canary: {steps: [5, 25, 50, 100]}"
                if self.strategy == "canary"
                else ("abtest: {match: [{headers: {x-user-group: {exact: beta}}}]}")
            )
            raise PydanticCustomError(
                "strategy",
                "strategy {s} needs a '{s}' block, e.g. {ex}",
                {"s": self.strategy, "ex": example, "subpath": f".{self.strategy}"},
            )
        if self.baseline.subset == self.candidate.subset:
            raise PydanticCustomError(
                "versions",
                "'{s}' is also the baseline's subset; the two versions need distinct subsets",
                {"s": self.candidate.subset, "subpath": ".candidate.subset"},
            )
        if self.baseline.labels == self.candidate.labels:
            raise PydanticCustomError(
                "versions",
                "the same labels as the baseline would select the same pods; make them differ",
                {"subpath": ".candidate.labels"},
            )
        if self.control is not None:
            self._coherent_control(self.control)
        if self.then == "canary":
            if self.strategy != "shadow":
                raise PydanticCustomError(
                    "then",
                    "'then: canary' follows a shadow test; set strategy: shadow",
                    {"subpath": ".then"},
                )
            if self.canary is None:
                raise PydanticCustomError(
                    "then",
                    "'then: canary' needs a 'canary' block with its steps",
                    {"subpath": ".canary"},
                )
        return self

    def _coherent_control(self, control: Control) -> None:
        if self.strategy not in ("canary", "shadow"):
            raise PydanticCustomError(
                "control",
                "a control arm applies to strategy canary or shadow, not {s}; remove 'control'",
                {"s": self.strategy, "subpath": ".control"},
            )
        where, message = control_errors(control, self.baseline, self.candidate)
        if message:
            raise PydanticCustomError("control", message, {"subpath": f".control{where}"})
        queries = self.metrics.prometheus.queries
        if (
            self.metrics.source == "prometheus"
            and queries.templates in BY_WORKLOAD
            and queries.workloads is not None
            and queries.workloads.control is None
        ):
            raise PydanticCustomError(
                "control",
                "with a control, templates {t} needs the control's Deployment too, e.g. "
                "control: fraud-v1-control",
                {
                    "t": queries.templates,
                    "subpath": ".metrics.prometheus.queries.workloads.control",
                },
            )
        collector = self.metrics.collector
        if (
            collector is not None
            and collector.inference_services is not None
            and collector.inference_services.control is None
        ):
            raise PydanticCustomError(
                "control",
                "with a control, the collector needs the control's InferenceService too (its "
                "logger sends the control's copies), e.g. control: fraud-v1-control",
                {"subpath": ".metrics.collector.inferenceServices.control"},
            )
        if self.local is not None and control.url is None and self.local.baseline.command is None:
            raise PydanticCustomError(
                "control",
                "the baseline runs at a url, so meshlab cannot start a second instance of it; "
                "give control.url (a second baseline server) or local.baseline.command",
                {"subpath": ".control.url"},
            )

    @property
    def control_version(self) -> Version | None:
        """The control arm as a routed version (subset, labels), or None without a control."""
        return None if self.control is None else self.control.version(self.baseline)

    @property
    def shadow_block(self) -> Shadow:
        """The shadow block, with defaults when the spec gives none."""
        return self.shadow or Shadow()

    @property
    def bluegreen_block(self) -> BlueGreen:
        """The blue/green block, with defaults when the spec gives none."""
        return self.bluegreen or BlueGreen()


class Experiment(StrictModel):
    """A model rollout experiment, as written in ``experiment.yaml``."""

    api_version: Literal["meshlab.io/v1alpha1"]
    kind: Literal["Experiment"]
    metadata: Metadata
    spec: ExperimentSpec

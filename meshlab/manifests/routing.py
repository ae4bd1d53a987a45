"""The mesh-neutral routing plan: ``experiment + step -> RoutingPlan``, the one input of every renderer.

A :class:`RoutingPlan` says, for one step, what the mesh must do and nothing about how a given API
spells it: which versions exist (baseline, candidate and, when given, a control arm, each a subset
name plus pod labels), and an ordered list of :class:`Rule` s. Each rule has the request matches it
applies to (none: every request), the backends that serve those requests with their weights
(percent) and the response headers each adds, and the mirrors (a list: shadow traffic may be copied
to several arms, each at its own percentage). Backends render the plan into their own objects:
Istio (``meshlab.manifests.istio``), the Gateway API (``meshlab.manifests.gateway``), the local
Envoy (``meshlab.mesh.envoy_config``). Everything here is pure and frozen.

Rules come in match order: one rule per request match that goes to the candidate (blue/green preview,
A/B test), then the main rule, which catches everything else. Every backend sets the response
header ``x-meshlab-arm: <arm>`` so a load generator attributes each response to the arm that served
it.

The control arm (issue 13): with ``control`` given, a step that sends ``w``% of traffic to the
candidate sends ``min(w, 100 - w)``% to the control and the rest to the baseline, so up to 50% the
control gets the candidate's share (production keeps ``100 - 2w``); above 50% the control gets what
is left (``100 - w``) and the baseline nothing, so the shares are no longer equal, and at 100% the
control gets nothing. A shadow step mirrors to the candidate and to the control at the same
percentage. Header-matched requests go to the candidate only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meshlab.manifests.steps import Step
from meshlab.spec import Experiment, RequestMatch, Version
from meshlab.spec.routing import StringMatch

Arm = Literal["baseline", "candidate", "control"]
ARM_HEADER = "x-meshlab-arm"
MatchKind = Literal["exact", "prefix", "regex"]
Pairs = tuple[tuple[str, str], ...]  # an ordered, frozen mapping


@dataclass(frozen=True)
class VersionRef:
    """One deployed version of the service: the arm it plays, its subset name and pod labels."""

    arm: Arm
    subset: str
    labels: Pairs

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Condition:
    """A string condition: exact value, prefix, or (RE2) regular expression matching it whole."""

    kind: MatchKind
    value: str


@dataclass(frozen=True)
class Match:
    """A request match: every header condition and the path condition (if any) must hold."""

    headers: tuple[tuple[str, Condition], ...] = ()
    path: Condition | None = None


@dataclass(frozen=True)
class Backend:
    """An arm serving a share of a rule's requests (``weight`` percent) and the headers it adds."""

    arm: Arm
    weight: int
    response_headers: Pairs


@dataclass(frozen=True)
class Mirror:
    """A copy of ``percent`` percent of a rule's requests sent to an arm; responses discarded."""

    arm: Arm
    percent: float


@dataclass(frozen=True)
class Retry:
    """The retry policy of meshlab's rules (``attempts`` 0 disables retries)."""

    attempts: int
    per_try_timeout: float | None = None  # seconds
    retry_on: str | None = None


@dataclass(frozen=True)
class Rule:
    """Requests matching any of ``matches`` (none: every request) go to ``backends``."""

    name: str
    matches: tuple[Match, ...]
    backends: tuple[Backend, ...]
    mirrors: tuple[Mirror, ...] = ()
    origin: str = ""  # the spec field the matches come from, for error messages


@dataclass(frozen=True)
class RoutingPlan:
    """Everything a backend needs to route one step of one experiment."""

    experiment: str
    namespace: str
    resource_name: str  # meshlab's objects and its main rule are named this
    step: str  # Step.name: "1", "2", ..., "promoted", "rollback"
    host: str
    port: int
    gateways: tuple[str, ...] | None
    versions: tuple[VersionRef, ...]
    rules: tuple[Rule, ...]
    timeout: float | None = None  # seconds, on every rule
    retry: Retry | None = None

    def version(self, arm: Arm) -> VersionRef:
        """The version playing ``arm`` (KeyError if this plan has none)."""
        for version in self.versions:
            if version.arm == arm:
                return version
        raise KeyError(arm)

    @property
    def main_rule(self) -> Rule:
        """The catch-all rule (always last)."""
        return self.rules[-1]

    def routed_arms(self) -> set[Arm]:
        """Arms that receive primary traffic or mirrored copies in this step."""
        arms: set[Arm] = set()
        for rule in self.rules:
            arms.update(b.arm for b in rule.backends if b.weight > 0)
            arms.update(m.arm for m in rule.mirrors if m.percent > 0)
        return arms


def resource_name(experiment: Experiment) -> str:
    """Name of meshlab's routing objects, and of its main rule."""
    return f"meshlab-{experiment.metadata.name}"[:63].rstrip("-")


def _condition(match: StringMatch) -> Condition:
    if match.exact is not None:
        return Condition("exact", match.exact)
    if match.prefix is not None:
        return Condition("prefix", match.prefix)
    assert match.regex is not None  # StringMatch validation: exactly one is set
    return Condition("regex", match.regex)


def request_match(match: RequestMatch) -> Match:
    """The spec's request match as a plan :class:`Match` (header order kept)."""
    headers = tuple((name, _condition(m)) for name, m in (match.headers or {}).items())
    return Match(headers, _condition(match.uri) if match.uri is not None else None)


def _backend(arm: Arm, weight: int) -> Backend:
    return Backend(arm, weight, ((ARM_HEADER, arm),))


def _version(arm: Arm, version: Version) -> VersionRef:
    return VersionRef(arm, version.subset, tuple(version.labels.items()))


def _weights(step: Step, with_control: bool) -> tuple[Backend, ...]:
    w = step.candidate_weight
    if step.kind == "rollback" or (w == 0 and step.kind not in ("canary", "promoted")):
        return (_backend("baseline", 100),)
    if step.kind == "promoted":
        return (_backend("candidate", 100),)
    if not with_control:
        return (_backend("baseline", 100 - w), _backend("candidate", w))
    control = min(w, 100 - w)
    return (
        _backend("baseline", 100 - w - control),
        _backend("candidate", w),
        _backend("control", control),
    )


def step_plan(experiment: Experiment, step: Step) -> RoutingPlan:
    """The plan a run applies for ``step``: with the spec's control arm when it has one."""
    return routing_plan(experiment, step, experiment.spec.control_version)


def routing_plan(experiment: Experiment, step: Step, control: Version | None = None) -> RoutingPlan:
    """The routing plan of ``step``; ``control`` adds a control arm (see the module docstring)."""
    spec = experiment.spec
    name = resource_name(experiment)
    versions = [_version("baseline", spec.baseline), _version("candidate", spec.candidate)]
    if control is not None:
        versions.append(_version("control", control))
    origin = "spec.bluegreen.previewHeader" if step.kind == "preview" else "spec.abtest.match"
    rules = [
        Rule(
            f"{name}-match-{i}",
            (request_match(m),),
            (_backend("candidate", 100),),
            origin=origin if step.kind == "preview" else f"{origin}[{i}]",
        )
        for i, m in enumerate(step.matches)
    ]
    mirrors: tuple[Mirror, ...] = ()
    if step.mirror_percent > 0:
        arms: tuple[Arm, ...] = ("candidate", "control") if control is not None else ("candidate",)
        mirrors = tuple(Mirror(arm, float(step.mirror_percent)) for arm in arms)
    rules.append(Rule(name, (), _weights(step, control is not None), mirrors))
    service = spec.service
    retry = None
    if service.retries is not None:
        retry = Retry(
            service.retries.attempts, service.retries.per_try_timeout, service.retries.retry_on
        )
    return RoutingPlan(
        experiment=experiment.metadata.name,
        namespace=experiment.metadata.namespace,
        resource_name=name,
        step=step.name,
        host=service.host,
        port=service.port,
        gateways=tuple(service.gateways) if service.gateways is not None else None,
        versions=tuple(versions),
        rules=tuple(rules),
        timeout=service.timeout,
        retry=retry,
    )

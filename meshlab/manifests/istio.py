"""Pure builders of Istio resources: ``experiment + step -> DestinationRule, VirtualService``.

Everything here is a function of its arguments (no I/O, no clock). The resources are
``networking.istio.io/v1``; they validate against Istio's CRD schema (tested for every strategy and
step) and follow its semantic rules: route weights sum to 100, ``mirror`` (never ``mirrors``) with a
``mirrorPercentage``. Every destination sets the response header ``x-meshlab-arm`` so a load generator
can attribute each response to the arm that served it. Routes meshlab owns are named
``meshlab-<experiment>`` (plus ``-match-<i>`` for header-matched ones), so an existing user-owned
VirtualService can be adopted by replacing only these routes.
"""

from __future__ import annotations

from typing import Any

from meshlab.manifests.steps import Step
from meshlab.spec import Experiment
from meshlab.spec.base import format_duration

API_VERSION = "networking.istio.io/v1"
ARM_HEADER = "x-meshlab-arm"
MANAGED_BY = {"app.kubernetes.io/managed-by": "meshlab"}
STEP_ANNOTATION = "meshlab.io/step"

Manifest = dict[str, Any]


def resource_name(experiment: Experiment) -> str:
    """Name of meshlab's VirtualService and DestinationRule, and of its main route."""
    return f"meshlab-{experiment.metadata.name}"[:63].rstrip("-")


def owned_route_prefix(experiment: Experiment) -> str:
    """Every HTTP route meshlab owns has a name starting with this."""
    return resource_name(experiment)


def _metadata(experiment: Experiment, step: Step) -> dict[str, Any]:
    labels = {**MANAGED_BY, "meshlab.io/experiment": experiment.metadata.name}
    return {
        "name": resource_name(experiment),
        "namespace": experiment.metadata.namespace,
        "labels": labels,
        "annotations": {STEP_ANNOTATION: step.name},
    }


def destination_rule(experiment: Experiment, step: Step) -> Manifest:
    """The DestinationRule declaring one subset per version, selected by its pod labels."""
    spec = experiment.spec
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": _metadata(experiment, step),
        "spec": {
            "host": spec.service.host,
            "subsets": [
                {"name": spec.baseline.subset, "labels": dict(spec.baseline.labels)},
                {"name": spec.candidate.subset, "labels": dict(spec.candidate.labels)},
            ],
        },
    }


def _destination(experiment: Experiment, arm: str, weight: int | None = None) -> dict[str, Any]:
    spec = experiment.spec
    version = spec.baseline if arm == "baseline" else spec.candidate
    out: dict[str, Any] = {
        "destination": {
            "host": spec.service.host,
            "subset": version.subset,
            "port": {"number": spec.service.port},
        },
    }
    if weight is not None:
        out["weight"] = weight
    out["headers"] = {"response": {"set": {ARM_HEADER: arm}}}
    return out


def _route_policy(experiment: Experiment) -> dict[str, Any]:
    service = experiment.spec.service
    out: dict[str, Any] = {}
    if service.timeout is not None:
        out["timeout"] = format_duration(service.timeout)
    if service.retries is not None:
        retries: dict[str, Any] = {"attempts": service.retries.attempts}
        if service.retries.per_try_timeout is not None:
            retries["perTryTimeout"] = format_duration(service.retries.per_try_timeout)
        if service.retries.retry_on is not None:
            retries["retryOn"] = service.retries.retry_on
        out["retries"] = retries
    return out


def http_routes(experiment: Experiment, step: Step) -> list[dict[str, Any]]:
    """meshlab's HTTP routes for a step, in match order (matched routes first)."""
    name = resource_name(experiment)
    policy = _route_policy(experiment)
    routes: list[dict[str, Any]] = []
    for i, match in enumerate(step.matches):
        routes.append(
            {
                "name": f"{name}-match-{i}",
                "match": [match.as_istio()],
                "route": [_destination(experiment, "candidate")],
                **policy,
            }
        )
    if step.kind == "rollback":
        default = [_destination(experiment, "baseline")]
    elif step.kind == "promoted":
        default = [_destination(experiment, "candidate")]
    elif step.candidate_weight == 0 and step.kind != "canary":
        default = [_destination(experiment, "baseline")]
    else:
        default = [
            _destination(experiment, "baseline", 100 - step.candidate_weight),
            _destination(experiment, "candidate", step.candidate_weight),
        ]
    main: dict[str, Any] = {"name": name, "route": default, **policy}
    if step.mirror_percent > 0:
        spec = experiment.spec
        main["mirror"] = {
            "host": spec.service.host,
            "subset": spec.candidate.subset,
            "port": {"number": spec.service.port},
        }
        main["mirrorPercentage"] = {"value": float(step.mirror_percent)}
    routes.append(main)
    return routes


def virtual_service(experiment: Experiment, step: Step) -> Manifest:
    """The VirtualService routing the service's traffic for this step."""
    service = experiment.spec.service
    spec: dict[str, Any] = {"hosts": [service.host]}
    if service.gateways:
        spec["gateways"] = list(service.gateways)
    spec["http"] = http_routes(experiment, step)
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _metadata(experiment, step),
        "spec": spec,
    }


def manifests(experiment: Experiment, step: Step) -> list[Manifest]:
    """DestinationRule first (subsets must exist before routes reference them), then the VirtualService."""
    return [destination_rule(experiment, step), virtual_service(experiment, step)]

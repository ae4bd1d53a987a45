"""Which series belong to which arm: template variables from the experiment spec, and the backend.

``istio`` (sidecars) and ``istio-waypoint`` (ambient mode) select an arm by its pods' ``version``
label (``destination_version``), ``istio-workload`` and ``istio-waypoint-workload`` by its
Deployment (``destination_workload``), ``envoy`` by its upstream cluster in the local mesh's
outbound Envoy (``outbound|<port>|<subset>|<host>``, the name istiod would give it). The service
name the Istio sets accept is the service's own; with ``target.routing: gateway-api`` also the arm's
backend Service (``meshlab-<service>-<subset>``), where the HTTPRoute sends it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from meshlab.errors import ConfigError
from meshlab.manifests.gateway import backend_service_name
from meshlab.manifests.routing import Arm, step_plan
from meshlab.manifests.steps import rollback
from meshlab.metrics.base import Clock
from meshlab.metrics.prometheus import PrometheusMetrics
from meshlab.metrics.templates import (
    BY_VERSION,
    BY_WORKLOAD,
    TemplateSet,
    envoy_cluster_name,
    promql_regex_literal,
)
from meshlab.metrics.templates import template_set as lookup_template_set
from meshlab.spec.experiment import Experiment
from meshlab.spec.metrics import ArmNames, PrometheusQueries

ARM_NAMES: tuple[Arm, ...] = ("baseline", "candidate")


def _arms(experiment: Experiment) -> tuple[Arm, ...]:
    """The arms with series of their own: the control too when the spec has one."""
    return (*ARM_NAMES, "control") if experiment.spec.control is not None else ARM_NAMES


def arm_variables(
    experiment: Experiment, templates: TemplateSet, workloads: ArmNames | None = None
) -> dict[str, dict[str, str]]:
    """The template variables selecting each arm of ``experiment`` for the ``templates`` set."""
    spec = experiment.spec
    versions = {"baseline": spec.baseline, "candidate": spec.candidate}
    control = spec.control_version
    if control is not None:  # its own subset, its own pods' version label
        versions["control"] = control
    arms = _arms(experiment)
    if templates.name == "envoy":
        return {
            arm: {"arm": envoy_cluster_name(spec.service.port, v.subset, spec.service.host)}
            for arm, v in versions.items()
        }
    namespace = experiment.metadata.namespace
    common = {
        arm: {"namespace": namespace, "service_regex": _services(experiment, arm)} for arm in arms
    }
    if templates.name in BY_WORKLOAD:
        if workloads is None:
            raise ConfigError(
                f"spec.metrics.prometheus.queries.workloads: templates {templates.name} needs the "
                "Deployment of each version ({baseline: ..., candidate: ...})"
            )
        if "control" in arms and workloads.control is None:
            raise ConfigError(
                "spec.metrics.prometheus.queries.workloads.control: with spec.control, templates "
                f"{templates.name} needs the control's Deployment too (e.g. "
                "control: fraud-v1-control)"
            )
        return {arm: {**common[arm], "arm": str(getattr(workloads, arm))} for arm in arms}
    if templates.name in BY_VERSION:
        out: dict[str, dict[str, str]] = {}
        for arm in arms:
            value = versions[arm].labels.get("version")
            if not value:
                raise ConfigError(
                    f"spec.{arm}.labels: no 'version' label, so Istio's destination_version cannot "
                    "tell the arms apart; add labels: {version: ...} to the pods and the spec, or "
                    "use queries.templates: istio-workload"
                )
            out[arm] = {**common[arm], "arm": value}
        return out
    raise ConfigError(f"template set {templates.name!r} has no arm selection; give the variables")


def _services(experiment: Experiment, arm: Arm) -> str:
    """The regex of the service names an arm's requests are reported under (see the docstring)."""
    service = experiment.spec.service.host.split(".", 1)[0]
    if experiment.spec.target.routing != "gateway-api":
        return promql_regex_literal(service)
    plan = step_plan(experiment, rollback())
    backend = backend_service_name(plan, plan.version(arm))
    return f"(?:{promql_regex_literal(service)}|{promql_regex_literal(backend)})"


def from_experiment(
    experiment: Experiment,
    queries: PrometheusQueries | None = None,
    *,
    clock: Clock = time.time,
    environ: Mapping[str, str] | None = None,
) -> PrometheusMetrics:
    """The Prometheus backend for ``experiment`` as its spec configures it.

    Template set: ``queries.templates``, else ``istio`` for ``target.kind: kubernetes`` and
    ``envoy`` for the local mesh. In a shadow test the candidate's samples are marked mirrored.
    """
    spec = experiment.spec
    prom = spec.metrics.prometheus
    queries = queries or PrometheusQueries()
    name = queries.templates or ("istio" if spec.target.kind == "kubernetes" else "envoy")
    templates = lookup_template_set(name)
    return PrometheusMetrics(
        prom.url,
        templates,
        arm_variables(experiment, templates, queries.workloads),
        token_env=prom.token_env,
        token_file=prom.token_file,
        verify_tls=prom.verify_tls,
        ca_file=queries.ca_file,
        timeout=prom.query_timeout,
        mirrored_arm=tuple(a for a in _arms(experiment) if a != "baseline")
        if spec.strategy == "shadow"
        else None,
        clock=clock,
        environ=environ,
    )

"""Argo Rollouts' web metric provider: the request it sends, the answer it evaluates.

Argo calls ``url`` (GET with the arguments in the query string, or POST/PUT with ``jsonBody``),
requires a 2xx JSON answer, takes ``jsonPath`` of it as ``result`` and evaluates the metric's
``successCondition``/``failureCondition`` (``utils/evaluate``): success true -> Successful,
failure true -> Failed, neither -> Inconclusive; a non-2xx answer is a measurement *Error*
(counted against ``consecutiveErrorLimit``, never as a failure). meshlab answers every look with
200 and its verdict at ``$.verdict``, so the AnalysisTemplate shipped in
``istio_manifests/serve/argo-analysistemplate.yaml`` (``successCondition: result == "promote"``,
``failureCondition: result == "abort"``, ``failureLimit: 0``, ``consecutiveSuccessLimit: 1``, a
large ``inconclusiveLimit``) fails the run at meshlab's first abort, succeeds at its first promote
and keeps measuring while inconclusive.

Arguments (query string or JSON body): ``namespace``, ``rollout``, ``revision`` (the canary's pod
template hash, ``podTemplateHashValue: Latest``), ``stable`` and ``canary`` (the arms: Services for
``templates=istio-service``, the default; workloads, versions or Envoy clusters otherwise),
``service`` (comma-separated Service names, for ``istio``/``istio-workload``), ``analysis``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshlab.errors import ConfigError
from meshlab.serve.config import ServeSettings
from meshlab.serve.judge import LookRequest
from meshlab.serve.sessions import SessionKey
from meshlab.serve.targets import build_target

DEFAULT_TEMPLATES = "istio-service"
_KNOWN = {
    "namespace", "rollout", "revision", "stable", "canary", "service", "templates", "analysis",
}  # fmt: skip


def _text(args: Mapping[str, Any], name: str, default: str = "") -> str:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str | int | float):
        raise ConfigError(f"{name}: expected a string, got {type(value).__name__}")
    return str(value).strip()


def look_request(args: Mapping[str, Any], settings: ServeSettings) -> LookRequest:
    """The session and settings an Argo measurement asks for (query string or JSON body)."""
    unknown = sorted(set(args) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown argument; Argo measurements take {', '.join(sorted(_KNOWN))}"
        )
    namespace = _text(args, "namespace")
    for name in ("namespace", "rollout", "revision"):
        if not _text(args, name):
            raise ConfigError(
                f"{name}: required to key the analysis session (see the shipped AnalysisTemplate)"
            )
    key = SessionKey("argo", namespace, _text(args, "rollout"), _text(args, "revision"))
    services = [s.strip() for s in _text(args, "service").split(",") if s.strip()]
    target = build_target(
        _text(args, "templates", DEFAULT_TEMPLATES),
        baseline=_text(args, "stable"),
        candidate=_text(args, "canary"),
        namespace=namespace,
        services=services,
    )
    raw = args.get("analysis")
    analysis = settings.analysis(raw if isinstance(raw, str | dict) or raw is None else str(raw))
    return LookRequest(key, target, analysis)

"""Flagger webhooks: the payload Flagger posts, and what each hook's status code means to it.

Flagger POSTs ``{"name", "namespace", "phase", "checksum", "metadata": {str: str}}`` with
``Content-Type: application/json`` and treats 200-202 as success, anything else (or a timeout) as a
failed call. meshlab keys the session by namespace, canary name and ``checksum`` (which changes with
every new revision of the target), and answers per hook type:

==========================  ================================================================
``rollout``                 2xx unless meshlab says abort (a failed check; ``threshold`` of them
                            roll back); no evidence is never a failure
``rollback``                2xx only on abort: Flagger stops and rolls back at once
``confirm-promotion``       2xx only on promote: the promotion gate opens
``confirm-traffic-increase``  2xx unless abort or Prometheus is unreachable (no blind steps)
==========================  ================================================================

Metadata (all optional): ``baseline``/``candidate`` (default ``<name>-primary``/``<name>``, the
Deployments Flagger runs), ``templates`` (default ``istio-workload``), ``service`` (default the
three Services Flagger creates), ``analysis`` (profile name or inline JSON), ``token``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from meshlab.errors import ConfigError
from meshlab.serve.config import ServeSettings
from meshlab.serve.judge import LookRequest
from meshlab.serve.sessions import SessionKey
from meshlab.serve.targets import build_target

Hook = Literal["rollout", "rollback", "confirm-promotion", "confirm-traffic-increase"]
HOOKS: tuple[Hook, ...] = ("rollout", "rollback", "confirm-promotion", "confirm-traffic-increase")
DEFAULT_TEMPLATES = "istio-workload"
CLOSED = 412  # Precondition Failed: the gate stays shut, the check failed, no rollback
_METADATA = {"baseline", "candidate", "templates", "service", "analysis", "token"}


def hook_name(text: str) -> Hook:
    for hook in HOOKS:
        if hook == text:
            return hook
    raise ConfigError(f"hook: unknown Flagger hook {text!r}; use one of {', '.join(HOOKS)}")


def look_request(payload: Any, settings: ServeSettings) -> LookRequest:
    """The session and settings a Flagger webhook payload asks for."""
    if not isinstance(payload, Mapping):
        raise ConfigError("body: a Flagger webhook payload is a JSON object")
    meta = payload.get("metadata") or {}
    if not isinstance(meta, Mapping) or not all(isinstance(v, str) for v in meta.values()):
        raise ConfigError("metadata: Flagger webhook metadata is a map of strings")
    unknown = sorted(set(meta) - _METADATA)
    if unknown:
        raise ConfigError(
            f"metadata.{unknown[0]}: unknown key; meshlab reads {', '.join(sorted(_METADATA))}"
        )
    name, namespace = str(payload.get("name") or ""), str(payload.get("namespace") or "")
    for field in ("name", "namespace", "checksum"):
        if not payload.get(field):
            raise ConfigError(
                f"{field}: missing from the webhook payload (Flagger always sends it)"
            )
    key = SessionKey("flagger", namespace, name, str(payload.get("checksum") or ""))
    default_services = f"{name},{name}-primary,{name}-canary"
    services = [s.strip() for s in meta.get("service", default_services).split(",") if s.strip()]
    target = build_target(
        meta.get("templates", DEFAULT_TEMPLATES),
        baseline=meta.get("baseline", f"{name}-primary"),
        candidate=meta.get("candidate", name),
        namespace=namespace,
        services=services,
    )
    return LookRequest(key, target, settings.analysis(meta.get("analysis")))


def status_for(hook: Hook, verdict: str) -> int:
    """The HTTP status Flagger must see for ``verdict`` at ``hook`` (pure)."""
    if hook == "rollout":
        return CLOSED if verdict == "abort" else 200
    if hook == "rollback":
        return 200 if verdict == "abort" else CLOSED
    if hook == "confirm-promotion":
        return 200 if verdict == "promote" else CLOSED
    return CLOSED if verdict == "abort" else 200


def status_when_unavailable(hook: Hook) -> int:
    """Prometheus unreachable: no evidence either way. Gates stay shut, nothing fails or rolls back."""
    return 200 if hook == "rollout" else CLOSED if hook == "rollback" else 503

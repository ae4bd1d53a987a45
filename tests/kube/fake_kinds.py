"""The kinds the fake API server serves, and how it validates and defaults each (see fake_apiserver).

Istio's CRDs (``tests.support.istio_schema``), the Gateway API's HTTPRoute CRD with its CEL rules
(``tests.support.gateway_schema``; stored with the schema's defaults applied, as a real server
does) and core ``v1`` Services (``tests.support.core_schema``; stored with the fields the server
assigns: ``clusterIP``, ``sessionAffinity``, ...) and ``coordination.k8s.io/v1`` Leases
(``tests.support.lease_schema``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.core_schema import service_defaults, service_errors
from tests.support.gateway_schema import apply_defaults, gateway_crds, gateway_schema_errors
from tests.support.istio_schema import crd_errors, crds, istio_schema_errors
from tests.support.lease_schema import lease_errors

Crds = dict[tuple[str, str], dict[str, Any]]  # (apiVersion, kind) -> schema, plural, scope


def served_kinds(extra: Crds | None = None) -> dict[tuple[str, str], str]:
    """(apiVersion, plural) -> kind for everything the fake serves (``extra``: more CRDs)."""
    kinds = {
        (api_version, entry["plural"]): kind
        for (api_version, kind), entry in {**crds(), **gateway_crds(), **(extra or {})}.items()
    }
    kinds[("v1", "services")] = "Service"
    kinds[("coordination.k8s.io/v1", "leases")] = "Lease"
    return kinds


BUILT_IN = ("v1", "coordination.k8s.io/v1")  # served by every API server, CRDs or not


def defaulted(
    api_version: str, body: dict[str, Any], old: dict[str, Any] | None, count: int
) -> dict[str, Any]:
    """``body`` as the server stores it (``old``: the stored object; ``count``: objects stored)."""
    kind = body.get("kind")
    if kind == "HTTPRoute" and isinstance(body.get("spec"), dict):
        schema = gateway_crds()[(api_version, kind)]["schema"]
        body["spec"] = apply_defaults(schema["properties"]["spec"], body["spec"])
    if kind == "Service" and isinstance(body.get("spec"), dict):
        ip = ((old or {}).get("spec") or {}).get("clusterIP")
        body["spec"] = service_defaults(
            body["spec"], ip or f"10.96.{count // 250}.{count % 250 + 2}"
        )
    return body


@dataclass(frozen=True)
class _Ctx:
    """Where a request goes."""

    api_version: str
    kind: str
    plural: str
    namespace: str
    name: str | None
    key: tuple[str, str, str]
    query: dict[str, str]
    dry_run: bool

    @property
    def group(self) -> str:
        """The API group of the path ("" for the core API)."""
        return self.api_version.rpartition("/")[0]

    @property
    def qualified(self) -> str:
        """``httproutes.gateway.networking.k8s.io``, ``services``: as the real messages say."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _schema_errors(
    body: dict[str, Any], old: dict[str, Any] | None = None, extra: Crds | None = None
) -> list[str]:
    """The validator of the body's kind: Service, Lease, Gateway API, extra CRDs, or Istio.

    ``old`` (the stored object of an update) lets CRD transition rules (``oldSelf``) be evaluated.
    """
    if body.get("kind") == "Service":
        return service_errors(body)
    if body.get("kind") == "Lease":
        return lease_errors(body)
    if str(body.get("apiVersion", "")).startswith("gateway.networking.k8s.io/"):
        return gateway_schema_errors(body)
    if extra and (str(body.get("apiVersion")), str(body.get("kind"))) in extra:
        return crd_errors(body, extra, "the fake's extra CRDs", old)
    return istio_schema_errors(body, old)

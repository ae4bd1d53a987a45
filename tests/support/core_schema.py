"""Strict validation of core ``v1`` Services, as the API server validates what meshlab writes.

A hand-written structural schema of the Service fields (the subset of ``io.k8s.api.core.v1.Service``
a ClusterIP Service uses, from the Kubernetes API reference v1.31), plus the server's semantic checks
meshlab's Services could break: port numbers, unique port names, label-valued selectors, a
``targetPort`` that is a port number or an IANA_SVC_NAME. Unknown fields are errors (as with
``fieldValidation=Strict``). What the server fills in on create (``clusterIP``, ``clusterIPs``,
``sessionAffinity``, ``ipFamilies``, ``ipFamilyPolicy``, ``internalTrafficPolicy``) is in
:func:`service_defaults`.
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.istio_schema import metadata_errors, schema_errors

_STRING = {"type": "string"}
_PORT = {
    "type": "object",
    "required": ["port"],
    "properties": {
        "name": _STRING,
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "targetPort": {"x-kubernetes-int-or-string": True},
        "protocol": {"type": "string", "enum": ["TCP", "UDP", "SCTP"]},
        "appProtocol": _STRING,
        "nodePort": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
}
SERVICE_SPEC = {
    "type": "object",
    "properties": {
        "type": {
            "type": "string",
            "enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        },
        "selector": {"type": "object", "additionalProperties": _STRING},
        "ports": {"type": "array", "items": _PORT},
        "clusterIP": _STRING,
        "clusterIPs": {"type": "array", "items": _STRING},
        "sessionAffinity": {"type": "string", "enum": ["None", "ClientIP"]},
        "ipFamilies": {"type": "array", "items": _STRING},
        "ipFamilyPolicy": _STRING,
        "internalTrafficPolicy": {"type": "string", "enum": ["Cluster", "Local"]},
        "publishNotReadyAddresses": {"type": "boolean"},
    },
}
_SVC_NAME = re.compile(r"^(?=.{1,15}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def service_errors(manifest: dict[str, Any]) -> list[str]:
    """Every violation of a v1 Service, as ``"path: message"`` strings."""
    errors = [
        f"{key}: unknown field"
        for key in manifest
        if key not in ("apiVersion", "kind", "metadata", "spec", "status")
    ]
    errors += metadata_errors(manifest.get("metadata"))
    spec = manifest.get("spec")
    found = schema_errors(SERVICE_SPEC, spec, "spec")
    if found or not isinstance(spec, dict):
        return errors + found
    names = [p.get("name") for p in spec.get("ports", [])]
    if len(spec.get("ports", [])) > 1 and (None in names or len(set(names)) != len(names)):
        errors.append("spec.ports: ports need unique names when there are several")
    for i, port in enumerate(spec.get("ports", [])):
        target = port.get("targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            errors.append(f"spec.ports[{i}].targetPort: must be between 1 and 65535")
        if isinstance(target, str) and not _SVC_NAME.match(target):
            errors.append(f"spec.ports[{i}].targetPort: must be an IANA_SVC_NAME")
    for key, value in (spec.get("selector") or {}).items():
        if not _LABEL_VALUE.match(value) or len(value) > 63:
            errors.append(f"spec.selector[{key}]: {value!r} is not a valid label value")
    return errors


def service_defaults(spec: dict[str, Any], cluster_ip: str) -> dict[str, Any]:
    """``spec`` with what the API server fills in on create (kept from the stored object after)."""
    out = {
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
        **spec,
    }
    out.setdefault("clusterIP", cluster_ip)
    out.setdefault("clusterIPs", [out["clusterIP"]])
    out["ports"] = [
        {"protocol": "TCP", **p, "targetPort": p.get("targetPort", p["port"])}
        for p in out.get("ports", [])
    ]
    return out

"""What a user applies so KServe's payload logger reaches meshlab's collector (pure builders).

Each version's InferenceService gets ``spec.predictor.logger`` pointing at its own collector path,
so the collector knows the arm without guessing::

    logger: {mode: all, url: http://meshlab-collector.<ns>.svc:8080/events/<arm>,
             metadataHeaders: [X-Request-Id]}

``metadataHeaders`` makes KServe copy the client's ``X-Request-Id`` into each event's ``metadata``
extension; that is the id primary and shadow are paired by (KServe's ``ce-id`` is a fresh UUID
unless the client sent a ``Ce-Id`` header). KServe matches these names against Go's canonical
header form, hence ``X-Request-Id`` spelled exactly so.

**Why the logger config carries no token.** KServe's ``LoggerSpec`` has only ``url``, ``mode``,
``metadataHeaders`` and ``metadataAnnotations``; its agent sends each event with a bare
CloudEvents HTTP client (``pkg/logger/worker.go``, ``sendHttpCloudEvent``): no header can be
added, and for ``https`` it only trusts a CA bundle (no client certificate). A token in the URL's
userinfo would be sent (Go turns it into Basic auth) but is readable by anyone who can read the
InferenceService and is printed by the agent, which logs the URL of every event at info level.
So in a cluster the logger is authenticated by the mesh instead, and the collector stays on
loopback:

* the meshlab pod runs an Istio sidecar; a ``Sidecar`` resource forwards the collector port to
  ``127.0.0.1:<port>``, where the collector listens (loopback: no token needed, none reachable);
* ``PeerAuthentication`` STRICT on that pod: only mTLS connections, i.e. workloads with a mesh
  identity, reach the sidecar;
* ``AuthorizationPolicy``: only the model pods' service accounts may ``POST /events/*``;
* a ``NetworkPolicy`` admits only the two InferenceServices' pods to the port (defence in depth,
  and the only fence when the CNI enforces policies but Istio's are not installed).

Model servers that are not KServe post the JSON contract of ``docs/collector-contract.md`` and can
send ``Authorization: Bearer <token>`` when the collector listens beyond loopback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from meshlab.errors import ConfigError
from meshlab.samples import ALL_ARMS, ARMS
from meshlab.spec.metrics import CollectorSpec

LoggerMode = Literal["all", "request", "response"]
METADATA_HEADERS = ("X-Request-Id",)
COLLECTOR_NAME = "meshlab-collector"
PORT_NAME = "http-collector"  # the http- prefix tells Istio the protocol
# The labels of meshlab's Job pod (istio_manifests/deploy/job.yaml).
MESHLAB_POD = {"app.kubernetes.io/name": "meshlab"}
# KServe labels every pod of an InferenceService with its name.
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"
_LABELS = {"app.kubernetes.io/name": "meshlab", "app.kubernetes.io/component": "collector"}


def collector_event_url(collector_url: str, arm: str) -> str:
    """Where ``arm``'s logger posts: ``<collector_url>/events/<arm>``."""
    parts = urlsplit(collector_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"collector url {collector_url!r} must be http(s)://host[:port], reachable from the "
            "model pods (e.g. http://meshlab-collector.models.svc:8080)"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "spec.metrics.collector.url: remove the user:password; KServe's agent logs the "
            "URL of every event, so a secret in it would leak"
        )
    if arm not in ALL_ARMS:
        raise ConfigError(f"arm {arm!r} is not 'baseline', 'candidate' or 'control'")
    return f"{collector_url.rstrip('/')}/events/{arm}"


def logger_spec(collector_url: str, arm: str, mode: LoggerMode = "all") -> dict[str, Any]:
    """The ``spec.predictor.logger`` block of one version's InferenceService."""
    return {
        "mode": mode,
        "url": collector_event_url(collector_url, arm),
        "metadataHeaders": list(METADATA_HEADERS),
    }


def logger_patches(
    inference_services: Mapping[str, str],
    namespace: str,
    collector_url: str,
    mode: LoggerMode = "all",
) -> list[dict[str, Any]]:
    """Merge patches (``serving.kserve.io/v1beta1``) enabling the logger on both versions.

    ``inference_services`` maps ``baseline`` and ``candidate`` (and ``control``, with
    ``spec.control``) to their InferenceService names.
    """
    if not set(ARMS) <= set(inference_services) or not set(inference_services) <= set(ALL_ARMS):
        raise ConfigError(
            "inference_services must name the baseline and the candidate (and the control, if any)"
        )
    arms = [arm for arm in ALL_ARMS if arm in inference_services]
    return [
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": inference_services[arm], "namespace": namespace},
            "spec": {"predictor": {"logger": logger_spec(collector_url, arm, mode)}},
        }
        for arm in arms
    ]


def arm_by_service(inference_services: Mapping[str, str]) -> dict[str, str]:
    """InferenceService name -> arm, for events posted to ``/events`` without an arm path."""
    return {name: arm for arm, name in inference_services.items()}


def collector_url(spec: CollectorSpec, namespace: str) -> str:
    """``spec.url``, or the in-cluster URL of the rendered Service."""
    if spec.url is not None:
        return spec.url
    scheme = "https" if spec.tls is not None else "http"
    return f"{scheme}://{COLLECTOR_NAME}.{namespace}.svc:{spec.port}"


def _services(spec: CollectorSpec) -> dict[str, str]:
    if spec.inference_services is None:
        raise ConfigError(
            "spec.metrics.collector.inferenceServices: rendering the KServe logger needs "
            "{baseline: <InferenceService>, candidate: <InferenceService>}"
        )
    return spec.inference_services.model_dump(exclude_none=True)  # the control only when named


def logger_patches_from_spec(spec: CollectorSpec, namespace: str) -> list[dict[str, Any]]:
    """:func:`logger_patches` from ``spec.metrics.collector``."""
    return logger_patches(_services(spec), namespace, collector_url(spec, namespace))


def collector_service(namespace: str, port: int) -> dict[str, Any]:
    """The Service the loggers post to, in front of meshlab's Job pod."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": COLLECTOR_NAME, "namespace": namespace, "labels": dict(_LABELS)},
        "spec": {
            "selector": dict(MESHLAB_POD),
            "ports": [
                {"name": PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"},
            ],
        },
    }


def collector_network_policy(
    namespace: str, inference_services: Mapping[str, str], port: int
) -> dict[str, Any]:
    """Only the two InferenceServices' pods may open connections to the collector port."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": COLLECTOR_NAME, "namespace": namespace, "labels": dict(_LABELS)},
        "spec": {
            "podSelector": {"matchLabels": dict(MESHLAB_POD)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchExpressions": [
                                    {
                                        "key": ISVC_POD_LABEL,
                                        "operator": "In",
                                        "values": [
                                            inference_services[arm]
                                            for arm in ALL_ARMS
                                            if arm in inference_services
                                        ],
                                    }
                                ]
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }


def collector_mesh_policies(
    namespace: str, port: int, service_accounts: list[str]
) -> list[dict[str, Any]]:
    """Sidecar (port -> loopback), PeerAuthentication STRICT and AuthorizationPolicy for the pod."""
    selector = {"matchLabels": dict(MESHLAB_POD)}
    metadata = {"name": COLLECTOR_NAME, "namespace": namespace, "labels": dict(_LABELS)}
    principals = [f"*/ns/{namespace}/sa/{account}" for account in service_accounts]
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": dict(metadata),
            "spec": {
                "workloadSelector": {"labels": dict(MESHLAB_POD)},
                "ingress": [
                    {
                        "port": {"number": port, "protocol": "HTTP", "name": PORT_NAME},
                        "defaultEndpoint": f"127.0.0.1:{port}",
                    }
                ],
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": dict(metadata),
            "spec": {"selector": selector, "mtls": {"mode": "STRICT"}},
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": dict(metadata),
            "spec": {
                "selector": selector,
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [{"source": {"principals": principals}}],
                        "to": [
                            {
                                "operation": {
                                    "methods": ["POST"],
                                    "paths": ["/events", "/events/*"],
                                    "ports": [str(port)],
                                }
                            }
                        ],
                    }
                ],
            },
        },
    ]


def collector_manifests(spec: CollectorSpec, namespace: str) -> list[dict[str, Any]]:
    """Everything to apply, in order: Service, NetworkPolicy, mesh policies, logger patches."""
    services = _services(spec)
    return [
        collector_service(namespace, spec.port),
        collector_network_policy(namespace, services, spec.port),
        *collector_mesh_policies(namespace, spec.port, list(spec.model_service_accounts)),
        *logger_patches(services, namespace, collector_url(spec, namespace)),
    ]


COLLECTOR_FILE = "collector.yaml"
PATCHES_FILE = "inferenceservice-logger-patches.yaml"


def collector_files(spec: CollectorSpec | None, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """File name -> documents, for ``meshlab render --all`` and the committed examples.

    Nothing without a collector. Without ``inferenceServices`` (model servers that post the JSON
    contract themselves) only the Service and the mesh policies: the NetworkPolicy and the logger
    patches need the InferenceServices' names.
    """
    if spec is None:
        return {}
    objects = [
        collector_service(namespace, spec.port),
        *collector_mesh_policies(namespace, spec.port, list(spec.model_service_accounts)),
    ]
    if spec.inference_services is None:
        return {COLLECTOR_FILE: objects}
    services = _services(spec)
    objects.insert(1, collector_network_policy(namespace, services, spec.port))
    return {
        COLLECTOR_FILE: objects,
        PATCHES_FILE: logger_patches(services, namespace, collector_url(spec, namespace)),
    }

"""Pure builders of the Envoy bootstrap files of the local mesh (no I/O).

The local mesh has the shape of an Istio mesh on one machine:

* one **outbound** Envoy (the client-side proxy) whose listener takes the user's traffic and routes
  it with the RouteConfiguration translated from the VirtualService, read through file-based RDS
  (``path_config_source`` with ``watched_directory``: Envoy reloads when a file is *moved* into the
  directory, so meshlab writes a temporary file and renames it over the served one);
* one **inbound** Envoy per version (the sidecar), in front of that version's model server, with its
  own admin port and therefore its own ``/stats/prometheus``. Mirrored copies (whose authority Envoy
  suffixes with ``-shadow``) go through the cluster ``inbound|<port>|mirror|`` and live traffic
  through ``inbound|<port>||``, so the telemetry tells them apart; the tap filter writes mirrored
  exchanges (headers with receive times, and the response body) to one JSON file each.

Every address is on 127.0.0.1; port 0 lets Envoy pick, and meshlab reads the port back from admin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshlab.mesh.envoy_config import ROUTE_CONFIG_NAME, static_cluster
from meshlab.stats.buckets import envoy_bucket_settings, fine_latency_buckets

Json = dict[str, Any]

LOOPBACK = "127.0.0.1"
OUTBOUND_LISTENER = "outbound"
INBOUND_LISTENER = "inbound"
# Envoy appends "-shadow" to the host of a mirrored request, before the port if there is one.
SHADOW_AUTHORITY_REGEX = r".*-shadow(:[0-9]+)?"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def _admin(port: int) -> Json:
    return {"address": {"socket_address": {"address": LOOPBACK, "port_value": port}}}


def _listener(name: str, port: int, hcm: Json) -> Json:
    return {
        "name": name,
        "address": {"socket_address": {"address": LOOPBACK, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {"@type": _HCM, **hcm},
                    }
                ]
            }
        ],
    }


def _hcm(stat_prefix: str, http_filters: list[Json], routing: Json) -> Json:
    return {
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        # The load generator sends x-request-id; keep it so a mirrored copy can be paired with the
        # primary request (Envoy copies the headers, x-request-id included, to the mirror).
        "generate_request_id": True,
        "preserve_external_request_id": True,
        "http_filters": [*http_filters, _ROUTER],
        **routing,
    }


def outbound_bootstrap(
    rds_path: Path,
    clusters: dict[str, tuple[str, int]],
    listen_port: int = 0,
    admin_port: int = 0,
) -> Json:
    """The client-side Envoy: one listener routed by RDS, one cluster per ``outbound|..`` name."""
    rds = {
        "rds": {
            "route_config_name": ROUTE_CONFIG_NAME,
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(rds_path),
                    "watched_directory": {"path": str(rds_path.parent)},
                },
            },
        },
    }
    return {
        "node": {"id": "meshlab-outbound", "cluster": "meshlab"},
        "admin": _admin(admin_port),
        # Histograms in /stats/prometheus refresh on each flush (5 s by default).
        "stats_flush_interval": "1s",
        # 2%-wide latency buckets, so a Prometheus-fed comparison can resolve a 10% tolerance.
        "stats_config": envoy_bucket_settings(fine_latency_buckets()),
        "static_resources": {
            "listeners": [_listener(OUTBOUND_LISTENER, listen_port, _hcm("outbound", [], rds))],
            "clusters": [
                static_cluster(name, host, port) for name, (host, port) in clusters.items()
            ],
        },
    }


def inbound_cluster_names(port: int) -> tuple[str, str]:
    """(live, mirrored) inbound cluster names of a sidecar, in istiod's ``inbound|<port>||`` style."""
    return f"inbound|{port}||", f"inbound|{port}|mirror|"


def _tap_filter(path_prefix: Path, max_body_bytes: int) -> Json:
    return {
        "name": "envoy.filters.http.tap",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.tap.v3.Tap",
            "common_config": {
                "static_config": {
                    "match": {
                        "http_request_headers_match": {
                            "headers": [
                                {
                                    "name": ":authority",
                                    "string_match": {
                                        "safe_regex": {"regex": SHADOW_AUTHORITY_REGEX}
                                    },
                                }
                            ]
                        }
                    },
                    "output_config": {
                        "max_buffered_rx_bytes": 1024,
                        "max_buffered_tx_bytes": max_body_bytes,
                        "sinks": [
                            {
                                "format": "JSON_BODY_AS_STRING",
                                "file_per_tap": {"path_prefix": str(path_prefix)},
                            }
                        ],
                    },
                }
            },
            "record_headers_received_time": True,
        },
    }


def inbound_bootstrap(
    service_port: int,
    model_host: str,
    model_port: int,
    tap_prefix: Path | None,
    admin_port: int = 0,
    max_body_bytes: int = 65536,
) -> Json:
    """A version's sidecar: inbound listener -> its model server, mirrored copies tapped."""
    live, mirrored = inbound_cluster_names(service_port)
    shadow = {
        "name": ":authority",
        "string_match": {"safe_regex": {"regex": SHADOW_AUTHORITY_REGEX}},
    }
    route_config = {
        "name": "inbound",
        "virtual_hosts": [
            {
                "name": "inbound",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/", "headers": [shadow]},
                        "route": {"cluster": mirrored, "timeout": "0s"},
                    },
                    {"match": {"prefix": "/"}, "route": {"cluster": live, "timeout": "0s"}},
                ],
            }
        ],
    }
    filters = [_tap_filter(tap_prefix, max_body_bytes)] if tap_prefix is not None else []
    dns = not model_host.replace(".", "").isdigit()
    clusters = [static_cluster(name, model_host, model_port) for name in (live, mirrored)]
    if dns:  # a model server given by name (``url: http://models.local:9000``)
        for cluster in clusters:
            cluster["type"] = "STRICT_DNS"
    return {
        "node": {"id": "meshlab-inbound", "cluster": "meshlab"},
        "admin": _admin(admin_port),
        # Histograms in /stats/prometheus refresh on each flush (5 s by default).
        "stats_flush_interval": "1s",
        "static_resources": {
            "listeners": [
                _listener(
                    INBOUND_LISTENER, 0, _hcm("inbound", filters, {"route_config": route_config})
                )
            ],
            "clusters": clusters,
        },
    }

"""The Prometheus backend reading the local mesh's own Envoy (meshlab.mesh.local) through Prometheus.

The local mesh routes with the same VirtualService a cluster would get; its outbound Envoy names
clusters like istiod (``outbound|<port>|<subset>|<host>``), which is what the ``envoy`` template
set selects. The model servers are loopback threads the mesh adopts (``url:`` versions); the
candidate answers 25 ms slower. A canary step splits traffic 50/50; a shadow step mirrors every
request, and the mirrored copies must show up on the candidate's cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from meshlab.mesh.local import LocalMesh
from meshlab.metrics import from_experiment
from meshlab.samples import BASELINE, CANDIDATE
from meshlab.spec import Experiment
from tests.metrics.conftest import (
    Stack,
    require_binaries,
    serve_model,
    wait_for,
)
from tests.support.scraped_mesh import scraped_mesh

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


def experiment(strategy: str, urls: dict[str, str], prometheus_url: str) -> Experiment:
    return Experiment.model_validate(
        {
            "apiVersion": "meshlab.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": f"prom-{strategy}", "namespace": "models"},
            "spec": {
                "strategy": strategy,
                "service": {"host": "fraud-model", "port": 8080},
                "baseline": {"subset": "v1", "labels": {"version": "v1"}},
                "candidate": {"subset": "v2", "labels": {"version": "v2"}},
                "canary": {"steps": [50]},
                "shadow": {"mirrorPercent": 100},
                "metrics": {"source": "prometheus", "prometheus": {"url": prometheus_url}},
                "local": {
                    "baseline": {"url": urls["baseline"]},
                    "candidate": {"url": urls["candidate"]},
                    "startupTimeout": "30s",
                    "captureMirrored": False,
                },
            },
        }
    )


@dataclass
class MeshStack:
    exp: Experiment
    mesh: LocalMesh
    prometheus_url: str


def _mesh_stack(strategy: str, tmp: Path) -> Iterator[MeshStack]:
    require_binaries()
    servers = {
        "baseline": serve_model("baseline", 0.0),
        "candidate": serve_model("candidate", 25.0),
    }
    with scraped_mesh(tmp, servers, lambda urls, url: experiment(strategy, urls, url)) as (
        exp,
        mesh,
        url,
    ):
        yield MeshStack(exp, mesh, url)


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[MeshStack]:
    yield from _mesh_stack("canary", tmp_path)


@pytest.fixture
def shadow(tmp_path: Path) -> Iterator[MeshStack]:
    yield from _mesh_stack("shadow", tmp_path)


def _wait_scraped(stack: MeshStack, arm_counts: dict[str, int]) -> None:
    prom = Stack("", "", stack.prometheus_url)
    host, port = "fraud-model", 8080
    for arm, subset in (("baseline", "v1"), ("candidate", "v2")):
        selector = f'{{envoy_cluster_name="outbound|{port}|{subset}|{host}"}}'
        expected = arm_counts[arm]

        def done(selector: str = selector, expected: int = expected) -> bool:
            rq = prom.prom_value(f"sum(envoy_cluster_upstream_rq{selector})") or 0.0
            lat = prom.prom_value(f"sum(envoy_cluster_upstream_rq_time_count{selector})") or 0.0
            return rq == expected and lat == expected

        # Envoy flushes histograms every 5 s by default (the local mesh keeps the default).
        wait_for(done, 25, f"{arm}: {expected} requests in Prometheus")


def test_canary_split_counts_and_latency_match_the_local_mesh(canary: MeshStack) -> None:
    backend = from_experiment(canary.exp)
    try:
        assert backend.fetch().is_empty
        seen = {"baseline": 0, "candidate": 0}
        errors = {"baseline": 0, "candidate": 0}
        with httpx.Client(base_url=canary.mesh.url, timeout=10) as client:
            for i in range(80):
                status = 503 if i % 10 == 0 else 200
                answer = client.get("/predict", params={"status": status})
                assert answer.status_code == status
                arm = answer.headers["x-meshlab-arm"]
                seen[arm] += 1
                errors[arm] += status >= 500
        assert min(seen.values()) > 10  # the 50/50 split reached both arms
        _wait_scraped(canary, seen)
        window = backend.fetch()
        for arm in seen:
            assert window.totals[arm].requests == seen[arm]
            assert window.totals[arm].errors == errors[arm]
        samples = window.samples
        cand, base = samples.arm == CANDIDATE, samples.arm == BASELINE
        assert float(np.median(samples.latency_ms[cand])) >= 25.0
        assert float(np.median(samples.latency_ms[base])) <= 10.0
        assert not samples.mirrored.any()
    finally:
        backend.close()


def test_mirrored_copies_are_counted_on_the_candidate_cluster(shadow: MeshStack) -> None:
    backend = from_experiment(shadow.exp)
    try:
        assert backend.fetch().is_empty
        with httpx.Client(base_url=shadow.mesh.url, timeout=10) as client:
            for _ in range(30):
                answer = client.get("/predict")
                assert answer.headers["x-meshlab-arm"] == "baseline"
        _wait_scraped(shadow, {"baseline": 30, "candidate": 30})
        window = backend.fetch()
        assert window.totals["baseline"].requests == 30
        assert window.totals["candidate"].requests == 30
        cand = window.samples.arm == CANDIDATE
        assert window.samples.mirrored[cand].all() and not window.samples.mirrored[~cand].any()
    finally:
        backend.close()

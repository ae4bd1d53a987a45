"""The local mesh with real Envoy and the real sample models: it routes as the VirtualService says."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter

import pytest
from scipy import stats

from meshlab.errors import MeshError
from meshlab.manifests import plan, promoted, rollback
from meshlab.mesh import MeshBackend
from meshlab.mesh.local import LocalMesh
from meshlab.samples import Sample
from tests.mesh.conftest import Client, apply, example, prediction

pytestmark = pytest.mark.envoy
P_FLOOR = 0.001  # a correct mesh fails these goodness-of-fit checks once in a thousand runs


def _settled_mirrored(mesh: LocalMesh, quiet: float = 0.5, timeout: float = 15.0) -> list[Sample]:
    """Drain mirrored samples until none arrived for ``quiet`` seconds (copies end after primaries)."""
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    while time.monotonic() - last_new < quiet and time.monotonic() < deadline:
        batch = mesh.mirrored_samples()
        if batch:
            assert [s.timestamp for s in batch] == sorted(s.timestamp for s in batch)
            samples += batch
            last_new = time.monotonic()
        time.sleep(0.05)
    return samples


def test_it_is_a_mesh_backend_and_reports_its_step(canary_mesh: LocalMesh) -> None:
    assert isinstance(canary_mesh, MeshBackend)
    exp = canary_mesh.experiment
    apply(canary_mesh, exp, plan(exp)[0])
    state = canary_mesh.status()
    assert state is not None and (state.experiment, state.step) == ("canary", "1")
    canary_mesh.rollback()
    state = canary_mesh.status()
    assert state is not None and state.step == "rollback"


def test_observed_split_matches_the_weights(canary_mesh: LocalMesh) -> None:
    exp = canary_mesh.experiment
    step = plan(exp)[1]  # 25%
    apply(canary_mesh, exp, step)
    n = 2000
    results = Client(canary_mesh.url).send(n, "split")
    assert [r.status for r in results] == [200] * n
    arms = Counter(r.arm for r in results)
    assert set(arms) == {"baseline", "candidate"}
    expected = [n * (100 - step.candidate_weight) / 100, n * step.candidate_weight / 100]
    p = stats.chisquare([arms["baseline"], arms["candidate"]], expected).pvalue
    print(f"split {dict(arms)} expected {expected} chi-square p={p:.3f}")
    assert p > P_FLOOR


def test_end_states_send_everything_to_one_arm(canary_mesh: LocalMesh) -> None:
    client = Client(canary_mesh.url)
    exp = canary_mesh.experiment
    apply(canary_mesh, exp, promoted())
    assert {r.arm for r in client.send(100, "promoted")} == {"candidate"}
    apply(canary_mesh, exp, rollback())
    assert {r.arm for r in client.send(100, "rolledback")} == {"baseline"}


def test_steps_with_identical_routes_are_still_acknowledged(canary_mesh: LocalMesh) -> None:
    """Canary 100% (weight-0 baseline dropped) and promoted translate to the same routes; Envoy
    skips unchanged resources, so without the per-step stamp the second apply would time out."""
    exp = canary_mesh.experiment
    full = plan(exp)[-1]
    assert full.candidate_weight == 100
    apply(canary_mesh, exp, full)
    apply(canary_mesh, exp, promoted())
    state = canary_mesh.status()
    assert state is not None and state.step == "promoted"
    apply(canary_mesh, exp, promoted())  # the very same step twice
    assert canary_mesh.last_apply_seconds is not None and canary_mesh.last_apply_seconds < 5


def test_mirror_rate_matches_mirror_percent_and_copies_keep_the_request_id(
    canary_mesh: LocalMesh,
) -> None:
    exp = example("canary.yaml", strategy="shadow", shadow={"mirrorPercent": 30})
    apply(canary_mesh, exp, plan(exp)[0])
    canary_mesh.mirrored_samples()  # discard copies of earlier tests
    n = 1500
    results = Client(canary_mesh.url).send(n, "mirror")
    assert {r.arm for r in results} == {"baseline"} and all(r.status == 200 for r in results)
    mirrored = _settled_mirrored(canary_mesh)
    sent = {r.request_id for r in results}
    ids = [s.request_id for s in mirrored]
    assert len(ids) == len(set(ids)) and set(ids) <= sent
    p = stats.binomtest(len(ids), n, 0.30).pvalue
    print(f"mirrored {len(ids)}/{n} at 30% binomial p={p:.3f}")
    assert p > P_FLOOR
    assert all(s.mirrored and s.arm == "candidate" and s.status == 200 for s in mirrored)


def test_every_mirrored_copy_pairs_with_its_primary_by_request_id(canary_mesh: LocalMesh) -> None:
    exp = example("canary.yaml", strategy="shadow", shadow={"mirrorPercent": 100})
    apply(canary_mesh, exp, plan(exp)[0])
    canary_mesh.mirrored_samples()
    results = Client(canary_mesh.url).send(300, "pair")
    mirrored = {s.request_id: s for s in _settled_mirrored(canary_mesh)}
    assert set(mirrored) == {r.request_id for r in results}
    # The candidate (an SVM) agrees with the baseline on most rows and disagrees on a few.
    agree = sum(str(prediction(r.body)) == mirrored[r.request_id].prediction for r in results)
    assert 0.9 * len(results) <= agree <= len(results)


def test_header_and_uri_matches_route_as_specified(canary_mesh: LocalMesh) -> None:
    exp = example(
        "abtest.yaml",
        abtest={
            "match": [
                {"headers": {"x-user-group": {"exact": "beta"}}},
                {"headers": {"x-tier": {"prefix": "gold"}}},
                {"headers": {"x-region": {"regex": "eu-(west|north)-[0-9]"}}},
            ]
        },
    )
    apply(canary_mesh, exp, plan(exp)[0])
    client = Client(canary_mesh.url)
    cases = [
        ({"x-user-group": "beta"}, "candidate"),
        ({"x-user-group": "betamax"}, "baseline"),
        ({"x-tier": "gold-plus"}, "candidate"),
        ({"x-tier": "silver"}, "baseline"),
        ({"x-region": "eu-west-1"}, "candidate"),
        ({"x-region": "eu-south-1"}, "baseline"),
        ({}, "baseline"),
    ]
    for i, (headers, arm) in enumerate(cases):
        assert {r.arm for r in client.send(20, f"match{i}", threads=2, headers=headers)} == {arm}


def test_a_step_change_under_load_loses_no_request(canary_mesh: LocalMesh) -> None:
    exp = canary_mesh.experiment
    states = [*plan(exp), rollback(), promoted()]
    client = Client(canary_mesh.url)
    stop = threading.Event()
    sender = threading.Thread(
        target=client.send, args=(100_000, "live"), kwargs={"threads": 4, "stop": stop}
    )
    sender.start()
    took: list[float] = []
    try:
        for _ in range(3):
            for step in states:
                apply(canary_mesh, exp, step)
                assert canary_mesh.last_apply_seconds is not None
                took.append(canary_mesh.last_apply_seconds)
                time.sleep(0.1)
    finally:
        stop.set()
        sender.join(timeout=30)
    results = [r for r in client.results if r.request_id.startswith("live-")]
    assert len(results) > 50
    assert canary_mesh.faults() == []  # busy is not dead: the probes saw every process answer
    assert Counter(r.status for r in results) == {200: len(results)}
    assert {r.arm for r in results} == {"baseline", "candidate"}
    print(
        f"{len(results)} requests over {len(took)} step changes; apply took "
        f"max {max(took) * 1000:.1f} ms"
    )


def test_a_route_envoy_rejects_keeps_the_previous_step(canary_mesh: LocalMesh) -> None:
    exp = canary_mesh.experiment
    apply(canary_mesh, exp, plan(exp)[0])
    # Python's re accepts a look-ahead, so the spec does; Envoy's RE2 does not.
    bad = example("abtest.yaml", abtest={"match": [{"headers": {"x-a": {"regex": "(?=a)a"}}}]})
    with pytest.raises(MeshError, match="rejected the new routes"):
        apply(canary_mesh, bad, plan(bad)[0])
    state = canary_mesh.status()
    assert state is not None and (state.experiment, state.step) == ("canary", "1")
    assert Counter(r.status for r in Client(canary_mesh.url).send(50, "after-reject")) == {200: 50}


def test_each_version_has_its_own_prometheus_telemetry(canary_mesh: LocalMesh) -> None:
    urls = canary_mesh.prometheus_urls
    assert set(urls) == {"outbound", "baseline", "candidate"}
    assert all(u.startswith("http://127.0.0.1:") for u in urls.values())
    with urllib.request.urlopen(urls["candidate"], timeout=5) as response:
        text = response.read().decode()
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|8080|mirror|"}' in text
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|8080||"}' in text


def test_a_version_that_never_gets_ready_is_a_clear_error(tmp_path: object) -> None:
    exp = example(
        "canary.yaml",
        local={
            "baseline": {
                "command": ["{python}", "-c", "import time; time.sleep(60)"],
                "readyUrl": "http://127.0.0.1:{port}/ready",
            },
            "candidate": {"url": "http://127.0.0.1:9"},
            "startupTimeout": "1s",
        },
    )
    mesh = LocalMesh(exp)
    try:
        with pytest.raises(MeshError, match=r"spec.local.baseline.readyUrl .* within 1s"):
            mesh.start()
        assert not any(c.exit_code() is None for c in mesh.group.children)
    finally:
        mesh.close()

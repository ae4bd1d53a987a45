"""The control arm's own Prometheus series (issue 13): selected by its subset, counted as arm 2.

A run with ``spec.control`` whose statistics come from Prometheus must compare the candidate with
the control, so the control needs series of its own: the local mesh's upstream cluster of the
control subset (``envoy``), its pods' ``version`` label (``istio``), its Deployment (the
``*-workload`` sets, ``queries.workloads.control``). The query API is a loopback stand-in
answering from a script (as in test_deltas.py); the real HTTP client and parsing run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from meshlab.errors import ConfigError
from meshlab.metrics import ENVOY, PrometheusMetrics
from meshlab.metrics.arms import arm_variables
from meshlab.metrics.templates import ISTIO, ISTIO_WORKLOAD
from meshlab.samples import CONTROL
from meshlab.spec import Experiment
from meshlab.spec.metrics import ArmNames

from .test_deltas import Script, buckets, counter


def _with_control(example_data: dict[str, Any], **control: Any) -> Experiment:
    data = {**example_data, "spec": {**example_data["spec"], "control": control}}
    return Experiment.model_validate(data)


def test_each_template_set_selects_the_controls_own_series(example_data: dict[str, Any]) -> None:
    exp = _with_control(example_data)
    envoy = arm_variables(exp, ENVOY)
    assert set(envoy) == {"baseline", "candidate", "control"}
    assert envoy["control"]["arm"].split("|")[2] == "control"  # outbound|port|control|host
    istio = arm_variables(exp, ISTIO)
    baseline_version = exp.spec.baseline.labels["version"]
    assert istio["control"]["arm"] == f"{baseline_version}-control"
    with pytest.raises(ConfigError, match=r"workloads\.control"):
        arm_variables(exp, ISTIO_WORKLOAD, ArmNames(baseline="a", candidate="b"))
    named = arm_variables(exp, ISTIO_WORKLOAD, ArmNames(baseline="a", candidate="b", control="c"))
    assert named["control"]["arm"] == "c"


@pytest.fixture
def backend() -> Iterator[PrometheusMetrics]:
    Script.state = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    ticks = iter(float(t) for t in range(100, 10_000, 10))
    arms = {"baseline": {"arm": "b"}, "candidate": {"arm": "c"}, "control": {"arm": "k"}}
    metrics = PrometheusMetrics(
        f"http://127.0.0.1:{server.server_address[1]}",
        ENVOY,
        arms,
        clock=lambda: next(ticks),
        mirrored_arm=("candidate", "control"),
    )
    try:
        yield metrics
    finally:
        metrics.close()
        server.shutdown()
        server.server_close()


def test_the_controls_deltas_become_arm_2_pseudo_samples(backend: PrometheusMetrics) -> None:
    zero = [0, 0, 0, 0, 0]
    Script.state = {k: ([counter(k, "200", 0)], buckets(k, zero)) for k in ("b", "c", "k")}
    backend.fetch()
    Script.state = {
        "b": ([counter("b", "200", 10)], buckets("b", [10, 10, 10, 10, 10])),
        "c": ([counter("c", "200", 4)], buckets("c", [0, 4, 4, 4, 4])),
        "k": ([counter("k", "200", 5)], buckets("k", [0, 0, 5, 5, 5])),
    }
    window = backend.fetch()
    assert window.totals["control"].requests == 5
    control = window.samples.arm == CONTROL
    assert int(control.sum()) == 5
    assert window.samples.latency_ms[control].tolist() == [25.0] * 5
    # a shadow's mirrored arms: the candidate's and the control's pseudo-samples
    assert window.samples.mirrored[control].all()
    assert not window.samples.mirrored[window.samples.arm == 0].any()


def test_arms_must_include_baseline_and_candidate() -> None:
    with pytest.raises(ConfigError, match="arms must be baseline, candidate"):
        PrometheusMetrics("http://127.0.0.1:9", ENVOY, {"baseline": {"arm": "b"}, "control": {}})

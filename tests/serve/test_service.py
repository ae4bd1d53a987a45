"""``meshlab serve`` without traffic: arguments, profiles, session files, status codes, secrets.

The HTTP layer runs in-process (Starlette's AppClient); Prometheus is an unused loopback port
(unreachable), which is itself a case under test: no evidence is an Error/closed gate, never a
failure or a rollback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from meshlab.errors import ConfigError
from meshlab.serve import Judge, PrometheusSettings, ServeSettings, load_profiles
from meshlab.serve.app import create_app
from meshlab.serve.config import profiles_from_data
from meshlab.serve.flagger import HOOKS, status_for, status_when_unavailable
from meshlab.serve.sessions import SessionKey, SessionRecord, StateError, StateStore
from meshlab.serve.targets import build_target
from meshlab.spec.analysis import Analysis
from tests.metrics.conftest import free_port

TOKEN = "s3cr3t-prometheus-token-value"


class AppClient:
    """Synchronous calls into the ASGI app (httpx's ASGITransport; no socket)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(call())

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)


def _settings(tmp: Path, **kw: Any) -> ServeSettings:
    prom = PrometheusSettings(f"http://127.0.0.1:{free_port()}", token_env="PROM_TOKEN", timeout=1)
    return ServeSettings(prom, tmp / "state", **kw)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppClient:
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    return AppClient(create_app(Judge(_settings(tmp_path))))


ARGO = {
    "namespace": "models", "rollout": "fraud-model", "revision": "7f9c", "templates": "envoy",
    "stable": "outbound|8080|v1|fraud-model", "canary": "outbound|8080|v2|fraud-model",
}  # fmt: skip


def test_argo_with_prometheus_unreachable_is_a_measurement_error_without_secrets(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = client.get("/argo/v1/measure", params=ARGO)
    assert answer.status_code == 503  # Argo: Error (consecutiveErrorLimit), never Failed
    assert "unreachable" in answer.json()["error"]
    assert TOKEN not in answer.text and TOKEN not in caplog.text


def test_index_and_health(client: AppClient) -> None:
    assert client.get("/healthz").text == "ok"
    assert client.get("/sessions").json() == []  # no session starts without a first read


def test_argo_bad_arguments_are_400_naming_the_field(client: AppClient) -> None:
    cases = {
        "stable": ({**ARGO, "stable": ARGO["canary"]}, "baseline/candidate: both arms"),
        "templates": ({**ARGO, "templates": "graphite"}, "templates: unknown template set"),
        "revision": ({k: v for k, v in ARGO.items() if k != "revision"}, "revision: required"),
        "unknown": ({**ARGO, "weight": "10"}, "weight: unknown argument"),
        "analysis": ({**ARGO, "analysis": "nope"}, "analysis: no profile 'nope'"),
        "json": ({**ARGO, "analysis": '{"alpha": 0.9}'}, "analysis.alpha"),
    }
    for name, (params, message) in cases.items():
        answer = client.get("/argo/v1/measure", params=params)
        assert answer.status_code == 400, name
        assert message in answer.json()["error"], (name, answer.json())


def test_argo_post_json_body_is_accepted(client: AppClient) -> None:
    answer = client.post("/argo/v1/measure", json={**ARGO, "analysis": {"alpha": 2}})
    assert answer.status_code == 400 and answer.json()["error"].startswith("analysis.alpha")


def test_flagger_hooks_with_prometheus_unreachable_neither_fail_nor_roll_back(
    client: AppClient,
) -> None:
    payload = {
        "name": "fraud-model", "namespace": "models", "phase": "Progressing", "checksum": "85d5",
        "metadata": {"templates": "envoy", "baseline": ARGO["stable"], "candidate": ARGO["canary"]},
    }  # fmt: skip
    statuses = {h: client.post(f"/flagger/v1/{h}", json=payload).status_code for h in HOOKS}
    assert statuses == {
        "rollout": 200,  # no evidence is not a failed check
        "rollback": 412,  # no rollback
        "confirm-promotion": 503,  # gate shut
        "confirm-traffic-increase": 503,  # no blind step
    }
    assert client.post("/flagger/v1/pre-rollout", json=payload).status_code == 400
    bad = {**payload, "metadata": {"cmd": "hey"}}
    answer = client.post("/flagger/v1/rollout", json=bad)
    assert answer.status_code == 400 and "metadata.cmd" in answer.json()["error"]


def test_flagger_status_table() -> None:
    table = {(h, v): status_for(h, v) for h in HOOKS for v in ("promote", "abort", "inconclusive")}
    assert [v for (h, v), s in table.items() if h == "rollout" and s >= 300] == ["abort"]
    assert [v for (h, v), s in table.items() if h == "rollback" and s < 300] == ["abort"]
    assert [v for (h, v), s in table.items() if h == "confirm-promotion" and s < 300] == ["promote"]
    assert table[("confirm-traffic-increase", "abort")] >= 300
    assert table[("confirm-traffic-increase", "inconclusive")] == 200
    assert status_when_unavailable("rollback") >= 300


def test_auth_token_is_required_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    monkeypatch.setenv("SERVE_TOKEN", "caller-token")
    client = AppClient(create_app(Judge(_settings(tmp_path, auth_token_env="SERVE_TOKEN"))))
    assert client.get("/argo/v1/measure", params=ARGO).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/argo/v1/measure", params=ARGO, headers=wrong).status_code == 401
    right = {"Authorization": "Bearer caller-token"}
    assert client.get("/argo/v1/measure", params=ARGO, headers=right).status_code == 503
    monkeypatch.delenv("SERVE_TOKEN")
    with pytest.raises(ConfigError, match="--auth-token-env: environment variable SERVE_TOKEN"):
        create_app(Judge(_settings(tmp_path, auth_token_env="SERVE_TOKEN")))


def test_profiles_from_experiment_configmap_directory_and_mapping(tmp_path: Path) -> None:
    experiment = yaml.safe_load(
        (Path(__file__).parents[2] / "examples" / "canary.yaml").read_text()
    )
    with pytest.raises(ConfigError, match=r"x: spec\.analysis\.metrics\[2\]\.type: prediction-div"):
        profiles_from_data(experiment, "x")
    metrics = experiment["spec"]["analysis"]["metrics"]
    experiment["spec"]["analysis"]["metrics"] = [
        m for m in metrics if "divergence" not in m["type"]
    ]
    assert set(profiles_from_data(experiment, "x")) == {"default"}
    section = {"alpha": 0.01, "metrics": [{"name": "e", "type": "error-rate", "tolerance": "1%"}]}
    configmap = {"kind": "ConfigMap", "data": {"strict": yaml.safe_dump(section)}}
    assert profiles_from_data(configmap, "x")["strict"].alpha == 0.01
    (tmp_path / "cm").mkdir()
    (tmp_path / "cm" / "default").write_text(yaml.safe_dump(section))
    (tmp_path / "cm" / "..data").mkdir()  # what a mounted ConfigMap also holds
    assert load_profiles(tmp_path / "cm")["default"].alpha == 0.01
    divergence = {"metrics": [{"name": "d", "type": "prediction-divergence", "tolerance": "1%"}]}
    with pytest.raises(ConfigError, match=r"x: d\.metrics\[0\]\.type: prediction-divergence"):
        profiles_from_data({"d": divergence}, "x")
    with pytest.raises(ConfigError, match=r"d\.metrics\[0\]\.tolerance"):
        profiles_from_data(
            {"d": {"metrics": [{"name": "e", "type": "error-rate", "tolerance": 5}]}}, "x"
        )


def test_session_state_round_trips_and_refuses_a_corrupt_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    key = SessionKey("flagger", "models", "fraud-model", "85d5/../x")
    target = build_target("istio-workload", baseline="fraud-model-primary", candidate="fraud-model",
                          namespace="models", services=["fraud-model", "fraud.model"])  # fmt: skip
    record = SessionRecord(
        key, 1000.0, Analysis(), target, (1002.0, 1004.0), None, {"verdict": "x"}, read_lag=3.0
    )
    store.save(record)
    assert store.path(key).parent == tmp_path  # the revision cannot escape the state directory
    assert store.load(key) == record
    assert dict(target.baseline)["service_regex"] == r"(?:fraud-model|fraud\.model)"
    store.path(key).write_text("{not json")
    with pytest.raises(StateError, match="unreadable"):
        store.load(key)
    assert json.loads(json.dumps(record.to_json()))["key"]["revision"] == "85d5/../x"


def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshlab.cli import main

    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    base = ["serve", "--state-dir", str(tmp_path / "s"), "--port", str(free_port())]
    cases = {
        "--prometheus-url: give an http": [*base, "--prometheus-url", "prom:9090"],
        "tokenEnv: environment variable NO_SUCH_TOKEN": [
            *base, "--prometheus-url", "http://127.0.0.1:1", "--prometheus-token-env", "NO_SUCH_TOKEN",
        ],
        "--prometheus-read-lag: -1.0 s is outside": [
            *base, "--prometheus-url", "http://127.0.0.1:1", "--prometheus-read-lag", "-1",
        ],
        "--analysis: cannot read": [
            *base, "--prometheus-url", "http://127.0.0.1:1", "--analysis", str(tmp_path / "none.yaml"),
        ],
    }  # fmt: skip
    for message, argv in cases.items():
        assert main(argv) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err

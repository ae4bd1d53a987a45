"""The collector over loopback with real CloudEvents from the ``cloudevents`` SDK, posted by httpx."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

from meshlab.collector import REQUEST_TYPE, RESPONSE_TYPE, Collector, Joiner
from meshlab.samples import BASELINE, CANDIDATE

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def kserve_event(
    kind: str,
    ce_id: str,
    request_id: str | None,
    data: dict[str, Any],
    *,
    service: str,
    at: datetime,
) -> CloudEvent:
    """An event shaped like KServe's logger sends (pkg/logger/worker.go)."""
    attributes: dict[str, Any] = {
        "id": ce_id,
        "type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
        "source": "http://localhost:9081/",
        "specversion": "1.0",
        "time": at,
        "datacontenttype": "application/json",
        "inferenceservicename": service,
        "namespace": "models",
        "component": "predictor",
        "endpoint": "",
        "metadata": json.dumps({"X-Request-Id": [request_id]} if request_id else {}),
    }
    return CloudEvent(attributes, data)


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector(Joiner(mirrored_arm="candidate", ttl=60)) as running:
        yield running


def post_binary(client: httpx.Client, path: str, event: CloudEvent) -> httpx.Response:
    message = to_binary_event(event)
    return client.post(path, headers=message.headers, content=message.body)


def test_binary_kserve_events_pair_primary_and_shadow_by_request_id(collector: Collector) -> None:
    rng = random.Random(7)
    posts: list[tuple[str, CloudEvent]] = []
    for i in range(20):
        rid = f"req-{i}"
        start = T0 + timedelta(seconds=i)
        # Each version's logger makes its own ce-id (a fresh UUID): only x-request-id links them.
        for arm, response in (
            ("baseline", {"predictions": [i / 100, 0.0]}),  # V1 protocol
            (
                "candidate",
                {
                    "outputs": [
                        {"name": "p", "datatype": "FP32", "shape": [1], "data": [i / 100 + 0.5]}
                    ]
                },
            ),  # V2 protocol
        ):
            ce_id = str(uuid.UUID(int=rng.getrandbits(128)))
            service = f"fraud-{arm}"
            posts.append(
                (
                    f"/events/{arm}",
                    kserve_event(
                        "request", ce_id, rid, {"instances": [[i]]}, service=service, at=start
                    ),
                )
            )
            posts.append(
                (
                    f"/events/{arm}",
                    kserve_event(
                        "response",
                        ce_id,
                        rid,
                        response,
                        service=service,
                        at=start + timedelta(milliseconds=12 if arm == "baseline" else 30),
                    ),
                )
            )
    rng.shuffle(posts)  # the logger's workers send asynchronously: any order can arrive
    with httpx.Client(base_url=collector.url, timeout=5) as client:
        for path, event in posts:
            response = post_binary(client, path, event)
            assert response.status_code == 200, response.text
    samples = collector.take()
    assert len(samples) == 40
    base, cand = samples.arm == BASELINE, samples.arm == CANDIDATE
    assert not samples.mirrored[base].any() and samples.mirrored[cand].all()
    by_arm = {
        arm: dict(
            zip(samples.request_id[mask].tolist(), samples.prediction[mask].tolist(), strict=True)
        )
        for arm, mask in (("baseline", base), ("candidate", cand))
    }
    assert set(by_arm["baseline"]) == set(by_arm["candidate"]) == {f"req-{i}" for i in range(20)}
    for i in range(20):
        assert by_arm["baseline"][f"req-{i}"] == pytest.approx(i / 100)
        assert by_arm["candidate"][f"req-{i}"] == pytest.approx(i / 100 + 0.5)
    assert samples.latency_ms[base].tolist() == pytest.approx([12.0] * 20, abs=0.01)
    assert samples.latency_ms[cand].tolist() == pytest.approx([30.0] * 20, abs=0.01)
    assert (samples.status == 200).all()
    assert collector.joiner.stats.pairs == 20
    assert len(collector.take()) == 0  # released once
    assert collector.joiner.pending == 0


def test_structured_mode_and_ce_id_fallback_and_service_mapping() -> None:
    services = {"fraud-v1": "baseline", "fraud-v2": "candidate"}
    with (
        Collector(Joiner(), services=services) as collector,
        httpx.Client(base_url=collector.url, timeout=5) as client,
    ):
        # The client sent its own Ce-Id header: both versions log it, no metadata needed.
        for service, prediction in (("fraud-v1", 1), ("fraud-v2", 0)):
            for kind, data in (
                ("request", {"instances": [[3]]}),
                ("response", {"predictions": [prediction]}),
            ):
                message = to_structured_event(
                    kserve_event(kind, "client-ce-id-1", None, data, service=service, at=T0)
                )
                assert message.headers["content-type"].startswith("application/cloudevents+json")
                answer = client.post("/events", headers=message.headers, content=message.body)
                assert answer.status_code == 200, answer.text
        samples = collector.take()
    assert samples.request_id.tolist() == ["client-ce-id-1"] * 2
    assert sorted(samples.prediction.tolist()) == [0, 1]
    assert samples.mirrored.tolist().count(True) == 1


def test_plain_json_records_from_servers_without_kserve(collector: Collector) -> None:
    with httpx.Client(base_url=collector.url, timeout=5) as client:
        for arm, prediction in (("baseline", {"label": "ok"}), ("candidate", {"label": "fraud"})):
            answer = client.post(
                f"/events/{arm}",
                json={
                    "requestId": "r-1",
                    "prediction": prediction,
                    "latencyMs": 4.5,
                    "time": 1.7e9,
                },
            )
            assert answer.status_code == 200, answer.text
    samples = collector.take()
    assert samples.prediction.tolist() == [{"label": "ok"}, {"label": "fraud"}]
    assert samples.latency_ms.tolist() == [4.5, 4.5]


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "reason"),
    [
        (
            "/events/baseline",
            {
                "ce-id": "1",
                "ce-type": "com.example.other",
                "ce-source": "s",
                "ce-specversion": "1.0",
            },
            b"{}",
            400,
            "is not org.kubeflow",
        ),
        (
            "/events/baseline",
            {"ce-type": REQUEST_TYPE, "ce-source": "s", "ce-specversion": "1.0"},
            b"{}",
            400,
            "ce-id: missing",
        ),
        (
            "/events/baseline",
            {"content-type": "application/cloudevents+json"},
            b'{"type": "x"}',
            400,
            "id: missing",
        ),
        (
            "/events/baseline",
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "type": "%s", "specversion": "1.0"}' % REQUEST_TYPE.encode(),
            400,
            "not a valid CloudEvent",
        ),
        (
            "/events",
            {"content-type": "application/json"},
            b'{"requestId": "x"}',
            400,
            "cannot tell which arm",
        ),
        (
            "/events/baseline",
            {"content-type": "application/json"},
            b"[1]",
            400,
            "must be an object",
        ),
        ("/events/baseline", {"content-type": "application/json"}, b"{}", 400, "requestId"),
        ("/events/shadow", {"content-type": "application/json"}, b"{}", 404, "post to /events"),
    ],
)
def test_bad_events_get_a_one_line_reason(
    collector: Collector, path: str, headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    answer = httpx.post(collector.url + path, headers=headers, content=body, timeout=5)
    assert answer.status_code == status
    assert reason in answer.text and answer.text.count("\n") == 1


def test_oversized_bodies_are_refused() -> None:
    with Collector(Joiner(), max_body=1024) as collector:
        answer = httpx.post(
            collector.url + "/events/baseline",
            content=b"x" * 4096,
            timeout=5,
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 413
        assert httpx.get(collector.url + "/healthz", timeout=5).text == "ok\n"


def test_chunked_bodies_are_refused_with_the_reason(collector: Collector) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"requestId": "r", "prediction": 1}'

    answer = httpx.post(collector.url + "/events/baseline", content=body(), timeout=5)
    assert answer.status_code == 411 and "content-length" in answer.text
    assert collector.rejections().nonzero() == {"length_required": 1}
    bad = httpx.post(collector.url + "/events/baseline", json={"prediction": 1}, timeout=5)
    assert bad.status_code == 400
    assert collector.rejections().nonzero() == {"length_required": 1, "bad_event": 1}
    assert collector.rejected == 2

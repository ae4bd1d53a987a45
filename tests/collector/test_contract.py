"""The JSON contract for model servers that are not KServe: the documented examples are accepted,
and the example client pairs both versions' predictions through a real collector (loopback)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from meshlab.collector import Collector, Joiner, Token

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "collector-contract.md"
CLIENT = REPO / "examples" / "collector_client.py"
TOKEN = "contract-token"


def test_the_documented_records_are_accepted_and_pair() -> None:
    bodies = re.findall(r"```json\n(.*?)\n```", DOC.read_text(), flags=re.DOTALL)
    assert len(bodies) == 2
    with Collector(Joiner(release="pairs"), token=Token(TOKEN)) as collector:
        for arm, body in zip(("baseline", "candidate"), bodies, strict=True):
            answer = httpx.post(
                f"{collector.url}/events/{arm}",
                content=body.encode(),
                headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
                timeout=5,
            )
            assert answer.status_code == 200, answer.text
        samples = collector.take()
    assert samples.request_id.tolist() == [json.loads(bodies[0])["requestId"]] * 2
    assert samples.prediction.tolist() == [{"label": "fraud", "score": 0.93}, 0]


def run_client(url: str, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLIENT), "--url", url, *args],
        env={**os.environ, "MESHLAB_COLLECTOR_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_example_client_posts_both_versions_and_reports_refusals() -> None:
    with Collector(Joiner(release="pairs"), token=Token(TOKEN)) as collector:
        for arm, prediction in (("baseline", '{"label": 0}'), ("candidate", '{"label": 1}')):
            done = run_client(
                collector.url, "--arm", arm, "--request-id", "r-42", "--prediction", prediction,
                "--latency-ms", "7.5",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        refused = run_client(collector.url, "--arm", "baseline", "--request-id", "x", token="bad")
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            "collector_client: 401: the bearer token does not match the collector's"
        )
        samples = collector.take()
        assert collector.rejections().nonzero() == {"invalid_token": 1}  # not retried
    assert samples.request_id.tolist() == ["r-42", "r-42"]
    assert samples.prediction.tolist() == [{"label": 0}, {"label": 1}]
    assert samples.latency_ms.tolist() == [7.5, 7.5]

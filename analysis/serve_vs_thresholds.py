"""meshlab serve against the controllers' own threshold analysis, on the same real data.

Starts the local mesh (real Envoy), Prometheus and ``meshlab serve`` (as ``tests/serve`` does),
then per scenario sends load through the mesh and, every INTERVAL seconds (one controller interval,
compressed), (a) calls meshlab exactly as Argo Rollouts does with the shipped AnalysisTemplate and
(b) evaluates on the same Prometheus data what the controller would conclude by itself: Flagger's
built-in ``request-success-rate >= 99%`` and ``request-duration p99 < 500 ms`` per interval with
``threshold: 5`` (promotion after 5 steps), and a typical Argo metric
(``successCondition: result[0] >= 0.99``, ``failureLimit: 3``, ``count: 5``).

Scenarios: identical arms (good); both arms at 1% errors (good, noisy); candidate 5% errors (bad);
candidate 60% slower, no errors (bad latency); identical arms at 0.4 requests/s (sparse).

Run from the repository root: ``python analysis/serve_vs_thresholds.py`` (about 6 minutes); writes
``analysis/serve_vs_thresholds.md``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.serve.argo_driver import AnalysisRun  # noqa: E402
from tests.serve.conftest import CLUSTERS, MeshStack, running_mesh, running_serve  # noqa: E402
from tests.serve.scenario import Load, ThresholdJudge  # noqa: E402

INTERVAL = 5.0  # seconds per controller interval (>= the local mesh's 5 s Envoy stats flush)
MAX_INTERVALS = 12


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float
    baseline: tuple[float, float]  # (delay_ms, error_rate)
    candidate: tuple[float, float]
    expected: str


SCENARIOS = [
    Scenario("good: identical arms", 40.0, (8.0, 0.0), (8.0, 0.0), "promote"),
    Scenario("good, noisy: both arms 1% errors", 40.0, (8.0, 0.01), (8.0, 0.01), "promote"),
    Scenario("bad: candidate 5% errors", 40.0, (8.0, 0.0), (8.0, 0.05), "abort"),
    Scenario("bad: candidate 60% slower", 40.0, (8.0, 0.0), (12.8, 0.0), "abort"),
    Scenario("sparse: identical arms, 0.4 req/s", 0.4, (8.0, 0.0), (8.0, 0.0), "no failure"),
]


def _metric() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "istio_manifests/serve/argo-analysistemplate.yaml").read_text())
    metric: dict[str, Any] = doc["spec"]["metrics"][0]
    return metric


def run(stack: MeshStack, serve_url: str, scenario: Scenario, index: int) -> dict[str, Any]:
    for arm, (delay, errors) in (
        ("baseline", scenario.baseline),
        ("candidate", scenario.candidate),
    ):
        stack.faults[arm].delay_ms, stack.faults[arm].error_rate = delay, errors
    args = {
        "namespace": "models", "rollout": "fraud-model", "canary-hash": f"calib{index}",
        "stable-service": CLUSTERS["baseline"], "canary-service": CLUSTERS["candidate"],
        "templates": "envoy", "analysis": "default",
    }  # fmt: skip
    argo = AnalysisRun(_metric(), args, serve_url)
    judge = ThresholdJudge(stack.prometheus_url, f"{int(INTERVAL)}s")
    meshlab: dict[str, Any] = {"verdict": "inconclusive", "interval": MAX_INTERVALS}
    started = time.monotonic()
    with Load(stack, scenario.rate):
        for i in range(1, MAX_INTERVALS + 1):
            time.sleep(max(0.0, started + i * INTERVAL - time.monotonic()))
            judge.check(time.time())
            if "requests" not in meshlab:
                m = argo.measure()
                body = m.body or {}
                if argo.phase() != "Running":
                    meshlab = {
                        "verdict": body.get("verdict"), "interval": i,
                        "requests": sum(body.get("requests", {}).values()),
                        "seconds": body.get("elapsed_seconds"),
                    }  # fmt: skip
            flagger, argo_own = judge.flagger(), judge.argo()
            if "requests" in meshlab and flagger[0] != "undecided" and argo_own[0] != "undecided":
                break
    if "requests" not in meshlab:
        body = argo.measurements[-1].body or {}
        meshlab["requests"] = sum(body.get("requests", {}).values())
        meshlab["seconds"] = body.get("elapsed_seconds")
    flagger, argo_own = judge.flagger(), judge.argo()
    return {
        "scenario": scenario.name,
        "expected": scenario.expected,
        "meshlab": meshlab,
        "flagger": (*flagger, 2 * judge.requests_until(flagger[1])),
        "argo": (*argo_own, 2 * judge.requests_until(argo_own[1])),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Each controller interval = {INTERVAL:g} s here (1 min in a typical Canary); requests are "
        "both arms' (the threshold analyses see only the candidate's half).",
        "",
        "| scenario | right answer | meshlab serve | Flagger thresholds (threshold 5) | Argo successCondition (failureLimit 3, count 5) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["meshlab"]
        lines.append(
            f"| {r['scenario']} | {r['expected']} | {m['verdict']} at interval {m['interval']} "
            f"({m['requests']} requests, {m['seconds']} s) | {r['flagger'][0]} at interval "
            f"{r['flagger'][1]} (~{r['flagger'][2]} requests) | {r['argo'][0]} at measurement "
            f"{r['argo'][1]} (~{r['argo'][2]} requests) |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="meshlab-serve-calib-") as tmp,
        running_mesh(Path(tmp)) as stack,
        running_serve(stack, Path(tmp)) as serve,
    ):
        for index, scenario in enumerate(SCENARIOS):
            rows.append(run(stack, serve.url, scenario, index))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    out = table(rows)
    (REPO / "analysis" / "serve_vs_thresholds.md").write_text(
        "# meshlab serve against threshold analysis (real Envoy + Prometheus)\n\n"
        "Output of `python analysis/serve_vs_thresholds.py`.\n\n" + out
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

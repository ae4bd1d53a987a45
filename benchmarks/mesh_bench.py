"""Benchmark of the local mesh: what two Envoy hops add, and how fast a step change takes effect.

Side by side in one run, against the same baseline model server:

* **direct**: wrk -> model server;
* **mesh**: wrk -> outbound Envoy (routes from RDS) -> the version's inbound Envoy -> model server,
  the two proxies a request crosses in an Istio mesh (client sidecar, server sidecar).

Each configuration runs at 1 connection (added latency without queueing) and at ``--connections``
(sustained requests/s), alternating direct/mesh ``--rounds`` times so drift hits both alike.
Latency percentiles come from wrk's own histogram (``--latency``), over every request.

Step-change propagation is measured twice: *acknowledged* is ``LocalMesh.apply`` from the rename
of the route file to Envoy's admin reporting the new version; *effective* is from the start of
``apply`` to the first response a sequential client gets from the newly routed arm.

Run: ``python benchmarks/mesh_bench.py`` (needs ``wrk``: ``apt-get install -y wrk``). The machine's
cores are shared with whatever else runs: treat the numbers as indicative and compare ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from meshlab.manifests import Step, manifests, promoted, rollback
from meshlab.mesh.local import LocalMesh
from meshlab.spec import load_experiment

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "examples" / "canary.yaml"
PATH = "/v2/models/breast-cancer/infer"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, body_file: Path, connections: int, seconds: float) -> dict[str, float]:
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["content-type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "r"); wrk.body = f:read("*a"); f:close()\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("ERRORS %d %d\\n", summary.errors.status,'
        " summary.errors.connect + summary.errors.read + summary.errors.write"
        " + summary.errors.timeout))\n"
        "end\n"
    )
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            url + PATH,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    result: dict[str, float] = {}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match is None:
            raise RuntimeError(f"no {label} latency in wrk's output:\n{out}")
        result[key] = float(match[1]) * _UNITS[match[2]]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"ERRORS (\d+) (\d+)", out)
    if rps is None or errors is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    result["rps"] = float(rps[1])
    result["errors"] = float(int(errors[1]) + int(errors[2]))
    return result


def _first_response_from(url: str, arm: str, body: bytes, deadline: float) -> float:
    """Send sequential requests until one is served by ``arm``; the monotonic time it arrived."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        while time.monotonic() < deadline:
            conn.request("POST", PATH, body, {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.headers.get("x-meshlab-arm") == arm:
                return time.monotonic()
    finally:
        conn.close()
    raise RuntimeError(f"no response from {arm} before the deadline")


def _watch(out: list[float], url: str, arm: str, body: bytes, deadline: float) -> None:
    out.append(_first_response_from(url, arm, body, deadline))


def _propagation(mesh: LocalMesh, body: bytes, rounds: int) -> tuple[list[float], list[float]]:
    exp = mesh.experiment
    acked: list[float] = []
    effective: list[float] = []
    for i in range(rounds):
        target: Step = promoted() if i % 2 == 0 else rollback()
        arm = "candidate" if target.kind == "promoted" else "baseline"
        docs = manifests(exp, target)
        seen: list[float] = []
        started = time.monotonic()
        watcher = threading.Thread(target=_watch, args=(seen, mesh.url, arm, body, started + 10))
        watcher.start()
        mesh.apply(target, docs)
        watcher.join()
        assert mesh.last_apply_seconds is not None
        acked.append(mesh.last_apply_seconds * 1000)
        effective.append((seen[0] - started) * 1000)
        time.sleep(0.2)
    return acked, effective


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="direct/mesh alternations")
    parser.add_argument("--switches", type=int, default=20, help="step changes to time")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("mesh_bench: needs wrk on PATH (apt-get install -y wrk)", file=sys.stderr)
        return 2
    exp = load_experiment(SPEC)
    body = (REPO / "loadtests/data/breast_cancer.v2.jsonl").read_text().splitlines()[0]
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalMesh(exp, here=SPEC.parent).start() as mesh:
        body_file = Path(tmp) / "body.json"
        body_file.write_text(body)
        targets = {"direct": mesh.model_urls["baseline"], "mesh": mesh.url}
        _wrk(mesh.url, body_file, 4, 1.0)  # warm up connections and caches
        for connections in (1, args.connections):
            for _ in range(args.rounds):
                for name, url in targets.items():
                    run = _wrk(url, body_file, connections, args.seconds)
                    row = results.setdefault(f"{name} c={connections}", {})
                    for key, value in run.items():
                        row.setdefault(key, []).append(value)
        acked, effective = _propagation(mesh, body.encode(), args.switches)

    med = {name: {k: statistics.median(v) for k, v in row.items()} for name, row in results.items()}
    print(f"{'configuration':<16}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}{'errors':>8}")
    for name, medians in med.items():
        print(
            f"{name:<16}{medians['p50_ms']:>9.3f}{medians['p99_ms']:>9.3f}{medians['rps']:>10.0f}"
            f"{medians['errors']:>8.0f}"
        )
    for connections in (1, args.connections):
        direct, mesh_row = med[f"direct c={connections}"], med[f"mesh c={connections}"]
        print(
            f"c={connections}: Envoy adds p50 {mesh_row['p50_ms'] - direct['p50_ms']:+.3f} ms, "
            f"p99 {mesh_row['p99_ms'] - direct['p99_ms']:+.3f} ms; "
            f"throughput ratio mesh/direct {mesh_row['rps'] / direct['rps']:.2f}"
        )
    print(
        f"step change acknowledged by Envoy: median {statistics.median(acked):.1f} ms, "
        f"max {max(acked):.1f} ms ({len(acked)} changes)"
    )
    print(
        f"step change effective for traffic: median {statistics.median(effective):.1f} ms, "
        f"max {max(effective):.1f} ms"
    )
    if args.json:
        print(json.dumps({"latency": med, "acknowledged_ms": acked, "effective_ms": effective}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

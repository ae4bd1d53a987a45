"""Shadow verdicts on the local mesh, tap vs collector, side by side on the demo's candidates.

The same shadow test of each demo candidate (``examples/demo/``: the good model and the one with
broken preprocessing) runs twice on real Envoy and real model servers: once with the tap's
captures fed to the statistics directly (``metrics.source: samples``), once through the collector
(``metrics.source: collector``: the captures are posted per ``docs/collector-contract.md`` and
joined with the primaries by request id, the cluster's path). Prints verdicts, requests to
decision and the collector's counts, one line per run::

    python benchmarks/tap_vs_collector.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples/demo"


def spec_for(candidate: str, source: str, out: Path) -> Path:
    """The demo's shadow test with ``candidate``'s model server and ``source`` as metrics source."""
    data: dict[str, Any] = yaml.safe_load((DEMO / "shadow-bad.yaml").read_text())
    body = data["spec"]
    data["metadata"]["name"] = f"demo-shadow-{candidate}-{source}"
    serve = str(DEMO.parent / "models/serve.py")
    body["load"]["payloads"] = str(REPO / "loadtests/data/breast_cancer.v2.jsonl")
    for arm in ("baseline", "candidate"):
        command = body["local"][arm]["command"]
        body["local"][arm]["command"] = [serve if "serve.py" in c else c for c in command]
    body["local"]["candidate"]["command"][-3] = candidate
    if candidate != "bad":
        body["local"]["candidate"].pop("env", None)
    body["metrics"] = {"source": source}
    path = out / f"{candidate}-{source}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(spec: Path, runs: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "meshlab", "shadow", "start", "-f", str(spec), "--json",
         "--runs", str(runs)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if not proc.stdout.strip():
        raise SystemExit(f"{spec.name}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    print("candidate  source     verdict       exit  decided after (requests, s)  collector")
    with tempfile.TemporaryDirectory(prefix="meshlab-tap-vs-collector-") as tmp:
        out = Path(tmp)
        for _ in range(args.repeat):
            for candidate in ("good", "bad"):
                for source in ("samples", "collector"):
                    result = run(spec_for(candidate, source, out), out / "runs")
                    after = result.get("decided_after") or {}
                    decided = (
                        f"{after['requests']}, {after['seconds_after_first_request']:.1f}"
                        if after
                        else "-"
                    )
                    c = result.get("collector") or {}
                    counts = (
                        f"shadow {c['by_arm'].get('candidate', 0)}, unpaired primary "
                        f"{c['unpaired_primary']}, rejected {c['rejected']}"
                        if c
                        else "-"
                    )
                    print(
                        f"{candidate:<10} {'tap' if source == 'samples' else source:<10} "
                        f"{result['verdict']:<13} {result['exit_code']:<5} {decided:<28} {counts}",
                        flush=True,
                    )


if __name__ == "__main__":
    main(sys.argv[1:])

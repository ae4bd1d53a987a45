"""Benchmark: how fast meshlab's load goes, next to wrk and to plain Locust, on one Envoy endpoint.

Side by side in one script, against the same real Envoy on loopback (``direct_response``: Envoy
answers itself and labels a random 30% of responses ``candidate``, so the server is not what is
measured). Three load generators, run alternately ``--repeat`` times, each for ``--seconds``:

* ``wrk``: the C reference (``-t1 -c USERS``), POSTing the same V2 body;
* ``locust``: plain Locust, the same locustfile (loadtests/v2.py) with recording off;
* ``meshlab``: meshlab's load (LoadRun: same user class, every request recorded and streamed).

Locust's rates come from its own request count over the run time; meshlab's recorded rows are
checked against that count. Prints requests/s (median of the repeats) and the ratios, including
the recording overhead ``1 - meshlab / locust`` (target: under 10%). The machine is shared, so
numbers move between runs; the ratios from one run of this script are what to compare.

    python benchmarks/load_bench.py --seconds 10 --repeat 3 [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "loadtests" / "support"))

import stack  # noqa: E402

from meshlab.load import LoadPlan, LoadRun, LocustConfig  # noqa: E402

PAYLOADS = ROOT / "loadtests" / "data" / "meshlab-features.jsonl"
PATH = "/v2/models/model/infer"


def run_wrk(url: str, body: bytes, seconds: int, users: int, work: Path) -> float:
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["content-type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{users}", f"-d{seconds}s", "-s", str(script), url + PATH],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(match.group(1))


def run_plain_locust(url: str, seconds: int, users: int, work: Path) -> float:
    """Plain Locust: the same locustfile, recording off (no MESHLAB_SAMPLES)."""
    report = work / "plain"
    env = {
        **os.environ,
        "MESHLAB_PAYLOADS": str(PAYLOADS),
        "MESHLAB_RPS": "max",
        "MESHLAB_USERS": str(users),
    }
    env.pop("MESHLAB_SAMPLES", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtests" / "v2.py"),
            "--headless",
            "--host",
            url,
            "-u",
            str(users),
            "-r",
            "1000",
            "--run-time",
            f"{seconds}s",
            "--stop-timeout",
            "0",
            "--loglevel",
            "WARNING",
            "--json-file",
            str(report),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,
    )
    try:
        proc.wait(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    entries = json.loads(report.with_suffix(".json").read_text())
    return sum(int(e["num_requests"]) for e in entries) / seconds


def run_meshlab(url: str, seconds: int, users: int, workers: int, work: Path) -> tuple[float, int]:
    """meshlab's load: returns (requests/s by Locust's count, rows lost)."""
    config = LocustConfig(payloads=str(PAYLOADS), rps=None, users=users, timeout=5.0)
    run_dir = Path(tempfile.mkdtemp(dir=work))
    with LoadRun(LoadPlan(config, url, float(seconds), workers=workers), run_dir) as run:
        rows = sum(len(b.samples) for b in run.batches())
        result = run.result()
    assert result.locust_requests is not None and rows == result.samples
    lost = result.lost or 0
    return result.locust_requests / seconds, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="meshlab's Locust workers")
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="meshlab-load-bench-"))
    from meshlab.load.payloads import build_bodies, read_rows

    body = build_bodies(read_rows(PAYLOADS)[:1], "v2")[0]
    config = stack.envoy_config(stack.free_port(), stack.free_port())
    envoy, port = stack.start_envoy(config, work / "envoy", concurrency=args.envoy_concurrency)
    url = f"http://127.0.0.1:{port}"
    rates: dict[str, list[float]] = {"wrk": [], "locust": [], "meshlab": []}
    lost = 0
    try:
        for i in range(args.repeat):
            rates["wrk"].append(run_wrk(url, body, args.seconds, args.users, work))
            rates["locust"].append(run_plain_locust(url, args.seconds, args.users, work))
            rate, missing = run_meshlab(url, args.seconds, args.users, args.workers, work)
            rates["meshlab"].append(rate)
            lost += missing
            print(
                f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()),
                flush=True,
            )
    finally:
        envoy.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"\nmedian requests/s over {args.repeat} x {args.seconds}s, {args.users} connections/users,"
        f" Envoy concurrency {args.envoy_concurrency}, meshlab workers {args.workers}, "
        f"{os.cpu_count()} CPUs (shared):"
    )
    for name, value in med.items():
        print(f"  {name:8s} {value:10,.0f}")
    print(f"  meshlab / wrk     = {med['meshlab'] / med['wrk']:.3f}")
    print(f"  locust  / wrk     = {med['locust'] / med['wrk']:.3f}")
    print(
        f"  meshlab / locust  = {med['meshlab'] / med['locust']:.3f}"
        f"  (recording overhead {1 - med['meshlab'] / med['locust']:+.1%}; target < 10%)"
    )
    print(f"  rows lost (Locust's count - recorded): {lost}")


if __name__ == "__main__":
    main()

"""Benchmark: how fast meshlab's load goes, next to wrk and to plain Locust, on one Envoy endpoint.

Side by side in one script, against the same real Envoy on loopback (``direct_response``: Envoy
answers itself and labels a random 30% of responses ``candidate``, so the server is not what is
measured). Four load generators, run alternately ``--repeat`` times, each for ``--seconds``:

* ``wrk``: the C reference (``-t1 -c USERS``), POSTing the same V2 body;
* ``locust``: plain Locust, the same locustfile (loadtests/v2.py) with recording off;
* ``locust+rec``: the same, recording to a spool file (MESHLAB_SAMPLES) that nobody reads;
* ``meshlab``: meshlab's load (LoadRun: same user class, every request recorded and streamed).

Locust's rates come from its own report (request count over test start to last request) for all
three Locust runs; meshlab's recorded rows are checked against that count. Then Locust's CPU time
per request at a fixed rate, recording off and on, which is steadier than throughput when other
work shares the CPUs. Prints requests/s (median of the repeats) and the ratios, including the
recording overhead (target: under 10%). The machine is shared, so numbers move between runs; the
ratios from one run of this script are what to compare.

    python benchmarks/load_bench.py --seconds 10 --repeat 3 [--workers 1]
    # or against a running endpoint, e.g. the local mesh (meshlab mesh up -f examples/canary.yaml):
    python benchmarks/load_bench.py --url http://127.0.0.1:PORT --model breast-cancer \\
        --payloads loadtests/data/breast_cancer.v2.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "loadtests" / "support"))

import stack  # type: ignore[import-not-found]  # noqa: E402

from meshlab.load import LoadPlan, LoadRun, LocustConfig  # noqa: E402

PAYLOADS = ROOT / "loadtests" / "data" / "meshlab-features.jsonl"


def run_wrk(url: str, path: str, body: bytes, seconds: int, users: int, work: Path) -> float:
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["content-type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{users}", f"-d{seconds}s", "-s", str(script), url + path],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(match.group(1))


def run_plain_locust(
    url: str,
    payloads: Path,
    model: str,
    seconds: int,
    users: int,
    work: Path,
    record: bool,
    rps: str = "max",
) -> tuple[float, float, int]:
    """Plain Locust, the same locustfile; ``record`` sets MESHLAB_SAMPLES (no meshlab reading).

    Returns (requests/s, CPU seconds Locust used, requests).
    """
    report = work / "plain"
    env = {
        **os.environ,
        "MESHLAB_PAYLOADS": str(payloads),
        "MESHLAB_RPS": rps,
        "MESHLAB_USERS": str(users),
        "MESHLAB_MODEL": model,
    }
    env.pop("MESHLAB_SAMPLES", None)
    if record:
        env["MESHLAB_SAMPLES"] = str(work / "by-hand-spool.csv")
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
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc.wait(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    entries = json.loads(report.with_suffix(".json").read_text())
    count = sum(int(e["num_requests"]) for e in entries)
    return locust_rate(report.with_suffix(".json")), cpu, count


RECORDER_TIMING = """
import json, sys, timeit
from geventhttpclient.header import Headers
from meshlab.load.config import LocustConfig
from meshlab.load.locust_user import SampleRecorder
from meshlab.load.payloads import make_extractor

class Response:  # what FastHttpUser hands the request event, with a V2 answer
    status_code = 200
    headers = Headers({"x-meshlab-arm": "baseline", "content-type": "application/json"})
    content = json.dumps({"model_name": "m", "outputs": [
        {"name": "output-0", "shape": [1], "datatype": "FP64", "data": [0.5]}]}).encode()

recorder = SampleRecorder(LocustConfig(), make_extractor("outputs[0].data[0]"))
response, context = Response(), {"meshlab_request_id": "0" * 32}
def one():
    recorder.in_flight["0" * 32] = 1.0
    recorder.on_request(1.234, response, context, start_time=1795553323.938)
n = 50000
seconds = min(timeit.repeat(one, number=n, repeat=5))
recorder.rows.clear()
print(seconds / n * 1e6)
"""


TOGGLE_LOCUSTFILE = """
import statistics, sys, time
import gevent
from locust import events
import meshlab.load.locust_user as lu

state = {"on": True, "n": 0}
record = lu.SampleRecorder.on_request

def switchable(self, *args, **kwargs):
    state["n"] += 1
    if state["on"]:
        record(self, *args, **kwargs)
    else:
        self.in_flight.pop(kwargs["context"].get("meshlab_request_id"), None)

lu.SampleRecorder.on_request = switchable

class Inference(lu.setup("v2")):
    abstract = False

def toggle():
    gevent.sleep(1.5)  # users up
    per_request = {True: [], False: []}
    for i in range(PHASES):
        state["on"] = i % 2 == 0
        cpu, n = time.process_time(), state["n"]
        gevent.sleep(0.5)
        per_request[state["on"]].append((time.process_time() - cpu) / max(1, state["n"] - n))
    print("TOGGLE", statistics.median(per_request[True]) * 1e6,
          statistics.median(per_request[False]) * 1e6, file=sys.stderr, flush=True)

@events.test_start.add_listener
def _start(**_):
    gevent.spawn(toggle)
"""


def toggled_cpu(
    url: str, payloads: Path, model: str, users: int, work: Path, rps: int
) -> tuple[float, float]:
    """Locust's CPU per request with recording on and off, alternating every 0.5 s in ONE process
    at a fixed rate, so drift and neighbours' load hit both sides alike. Returns (on, off) us."""
    phases = 24
    locustfile = work / "toggle_locustfile.py"
    locustfile.write_text(TOGGLE_LOCUSTFILE.replace("PHASES", str(phases)))
    env = {
        **os.environ,
        "MESHLAB_PAYLOADS": str(payloads),
        "MESHLAB_RPS": str(rps),
        "MESHLAB_USERS": str(users),
        "MESHLAB_MODEL": model,
        "MESHLAB_SAMPLES": str(work / "toggle-spool.csv"),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(locustfile),
            "--headless",
            "--host",
            url,
            "-u",
            str(users),
            "-r",
            "1000",
            "--run-time",
            f"{int(phases * 0.5 + 4)}s",
            "--stop-timeout",
            "0",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stderr
    line = next(ln for ln in out.splitlines() if ln.startswith("TOGGLE"))
    _, on, off = line.split()
    return float(on), float(off)


def recorder_micros() -> float:
    """Microseconds the recorder spends per request (in a child: it imports Locust)."""
    out = subprocess.run(
        [sys.executable, "-c", RECORDER_TIMING], capture_output=True, text=True, check=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def cpu_per_request(
    url: str, payloads: Path, model: str, users: int, work: Path, record: bool, rps: int
) -> float:
    """Locust's CPU microseconds per request at a fixed rate: the slope between a 3 s and a 9 s
    run, so start-up cancels out. Steadier than throughput on a shared machine."""
    _, cpu_short, n_short = run_plain_locust(url, payloads, model, 3, users, work, record, str(rps))
    _, cpu_long, n_long = run_plain_locust(url, payloads, model, 9, users, work, record, str(rps))
    micros: float = (cpu_long - cpu_short) / (n_long - n_short) * 1e6
    return micros


def locust_rate(stats_json: Path) -> float:
    """Requests/s from Locust's own report: its count over the span from test start to last request.

    The same measure for plain Locust and meshlab, whatever ends each run.
    """
    entries = json.loads(stats_json.read_text())
    count = sum(int(e["num_requests"]) for e in entries)
    last = max(float(e["last_request_timestamp"]) for e in entries)
    return count / (last - min(float(e["start_time"]) for e in entries))


def run_meshlab(
    url: str, payloads: Path, model: str, seconds: int, users: int, workers: int, work: Path
) -> tuple[float, int]:
    """meshlab's load: returns (requests/s by Locust's count, rows lost)."""
    config = LocustConfig(
        payloads=str(payloads),
        model=model,
        path=f"/v2/models/{model}/infer",
        rps=None,
        users=users,
        timeout=5.0,
    )
    run_dir = Path(tempfile.mkdtemp(dir=work))
    with LoadRun(LoadPlan(config, url, float(seconds), workers=workers), run_dir) as run:
        rows = sum(len(b.samples) for b in run.batches())
        result = run.result()
    assert result.locust_requests is not None and rows == result.samples
    lost = result.lost or 0
    return locust_rate(run_dir / "locust_stats.json"), lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="meshlab's Locust workers")
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    parser.add_argument("--url", default=None, help="a running V2 endpoint instead of Envoy's own")
    parser.add_argument("--payloads", type=Path, default=PAYLOADS)
    parser.add_argument("--model", default="model")
    parser.add_argument("--cpu-rps", type=int, default=1000, help="fixed rate of the CPU runs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="meshlab-load-bench-"))
    from meshlab.load.payloads import build_bodies, read_rows

    body = build_bodies(read_rows(args.payloads)[:1], "v2", model=args.model)[0]
    path = f"/v2/models/{args.model}/infer"
    envoy = None
    if args.url is None:
        config = stack.envoy_config(stack.free_port(), stack.free_port())
        envoy, port = stack.start_envoy(config, work / "envoy", concurrency=args.envoy_concurrency)
        url = f"http://127.0.0.1:{port}"
    else:
        url = args.url.rstrip("/")
    rates: dict[str, list[float]] = {"wrk": [], "locust": [], "locust+rec": [], "meshlab": []}
    lost = 0
    try:
        for i in range(args.repeat):
            rates["wrk"].append(run_wrk(url, path, body, args.seconds, args.users, work))
            for name, record in (("locust", False), ("locust+rec", True)):
                rate, _, _ = run_plain_locust(
                    url, args.payloads, args.model, args.seconds, args.users, work, record
                )
                rates[name].append(rate)
            rate, missing = run_meshlab(
                url, args.payloads, args.model, args.seconds, args.users, args.workers, work
            )
            rates["meshlab"].append(rate)
            lost += missing
            print(
                f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()),
                flush=True,
            )
        cpu: dict[str, list[float]] = {"locust": [], "locust+rec": []}
        for _ in range(args.repeat):
            for name, record in (("locust", False), ("locust+rec", True)):
                cpu[name].append(
                    cpu_per_request(
                        url, args.payloads, args.model, args.users, work, record, args.cpu_rps
                    )
                )
            print(
                f"CPU/request at {args.cpu_rps}/s: "
                + ", ".join(f"{k} {v[-1]:.0f} us" for k, v in cpu.items()),
                flush=True,
            )
        toggles: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            toggles.append(
                toggled_cpu(url, args.payloads, args.model, args.users, work, args.cpu_rps)
            )
            on, off = toggles[-1]
            print(f"recording on/off in one process: {on:.0f} / {off:.0f} us", flush=True)
    finally:
        if envoy is not None:
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
    rec = med["locust+rec"] / med["locust"]
    print(f"  locust+rec / locust = {rec:.3f}  (recording in Locust: overhead {1 - rec:+.1%})")
    full = med["meshlab"] / med["locust"]
    print(
        f"  meshlab / locust  = {full:.3f}  (recording + meshlab reading the stream on the same"
        f" CPUs: overhead {1 - full:+.1%}; target < 10%)"
    )
    print(f"  rows lost (Locust's count - recorded): {lost}")
    plain_cpu, rec_cpu = (statistics.median(cpu[k]) for k in ("locust", "locust+rec"))
    micros = recorder_micros()
    print(
        f"  recorder per request (timed in isolation): {micros:.1f} us = "
        f"{micros / plain_cpu:.1%} of plain Locust's CPU per request"
    )
    print(
        f"  Locust CPU per request at {args.cpu_rps}/s: plain {plain_cpu:.0f} us, recording "
        f"{rec_cpu:.0f} us -> recording costs {rec_cpu / plain_cpu - 1:+.1%} CPU per request"
        " (separate runs)"
    )
    on = statistics.median(t[0] for t in toggles)
    off = statistics.median(t[1] for t in toggles)
    print(
        f"  recording on vs off, alternating in one Locust process at {args.cpu_rps}/s: "
        f"{on:.0f} vs {off:.0f} us per request -> overhead {on / off - 1:+.1%} (target < 10%;"
        " the steadiest of these measures)"
    )


if __name__ == "__main__":
    main()

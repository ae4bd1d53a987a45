"""The local mesh in front of loopback model servers, scraped by a real Prometheus (Debian).

Shared by the Prometheus-on-the-local-mesh tests (tests/metrics/test_local_mesh.py) and
``meshlab serve``'s tests (tests/serve/conftest.py): :func:`scraped_mesh` starts the mesh at the
plan's first step, a Prometheus that scrapes every Envoy admin port the mesh exposes, waits for
the first scrape of each, and stops Prometheus (by PID), the mesh and the model servers on exit,
even when the test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

from meshlab.manifests import plan
from meshlab.mesh.local import LocalMesh
from meshlab.spec import Experiment
from tests.metrics.conftest import free_port, start_prometheus, stop, wait_prometheus


@contextlib.contextmanager
def scraped_mesh(
    tmp: Path,
    servers: dict[str, ThreadingHTTPServer],
    experiment: Callable[[dict[str, str], str], Experiment],
) -> Iterator[tuple[Experiment, LocalMesh, str]]:
    """(the experiment, its running mesh, Prometheus' URL) for the arms' ``servers``.

    ``experiment(urls, prometheus_url)`` builds the spec from each arm's URL and Prometheus' URL.
    """
    urls = {arm: f"http://127.0.0.1:{s.server_address[1]}" for arm, s in servers.items()}
    port = free_port()
    prometheus_url = f"http://127.0.0.1:{port}"
    exp = experiment(urls, prometheus_url)
    mesh = LocalMesh(exp, run_dir=tmp / "mesh")
    prometheus = None
    try:
        mesh.start(plan(exp)[0])
        targets = {name: url.removeprefix("http://") for name, url in mesh.admin_urls.items()}
        prometheus = start_prometheus(tmp, port, targets)
        wait_prometheus(prometheus_url, list(targets))
        yield exp, mesh, prometheus_url
    finally:
        if prometheus is not None:
            stop(prometheus)
        mesh.close()
        for server in servers.values():
            server.shutdown()
            server.server_close()

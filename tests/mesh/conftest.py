"""Fixtures of the local-mesh tests: example experiments, a shared running mesh, a small client."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from meshlab.manifests import Step, routing_plan
from meshlab.mesh.local import LocalMesh
from meshlab.spec import Experiment, load_experiment
from tests.conftest import REPO

EXAMPLES = REPO / "examples"
MODEL = "breast-cancer"
INFER_PATH = f"/v2/models/{MODEL}/infer"
BODIES = [
    line.encode()
    for line in (REPO / "loadtests/data/breast_cancer.v2.jsonl").read_text().splitlines()
]


def example(name: str, **spec_updates: Any) -> Experiment:
    """An example experiment, optionally with spec fields replaced (parsed through the spec)."""
    exp = load_experiment(EXAMPLES / name)
    if spec_updates:
        data = exp.model_dump(by_alias=True, exclude_none=True)
        data["spec"].update(spec_updates)
        exp = Experiment.model_validate(data)
    return exp


def apply(mesh: LocalMesh, experiment: Experiment, step: Step) -> None:
    mesh.apply(routing_plan(experiment, step))


@pytest.fixture(scope="module")
def canary_mesh() -> Iterator[LocalMesh]:
    """One mesh (2 model servers, 3 Envoys) shared by a module's tests; always stopped."""
    mesh = LocalMesh(example("canary.yaml"), here=EXAMPLES)
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.close()


@dataclass
class Result:
    request_id: str
    status: int  # 0 = transport error
    arm: str
    body: bytes = b""


@dataclass
class Client:
    """Keep-alive HTTP/1.1 clients on a few threads, like a load generator but bounded."""

    url: str
    results: list[Result] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _worker(
        self, ids: list[str], headers: dict[str, str], stop: threading.Event | None
    ) -> None:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        local: list[Result] = []
        try:
            for i, request_id in enumerate(ids):
                if stop is not None and stop.is_set():
                    break
                try:
                    conn.request(
                        "POST",
                        INFER_PATH,
                        BODIES[i % len(BODIES)],
                        {"content-type": "application/json", "x-request-id": request_id, **headers},
                    )
                    response = conn.getresponse()
                    body = response.read()
                    local.append(
                        Result(
                            request_id,
                            response.status,
                            response.headers.get("x-meshlab-arm", ""),
                            body,
                        )
                    )
                except (OSError, http.client.HTTPException):
                    local.append(Result(request_id, 0, ""))
                    conn.close()
                    conn = http.client.HTTPConnection(
                        parts.hostname or "127.0.0.1", parts.port, timeout=10
                    )
        finally:
            conn.close()
            with self._lock:
                self.results += local

    def send(
        self,
        n: int,
        prefix: str,
        threads: int = 4,
        headers: dict[str, str] | None = None,
        stop: threading.Event | None = None,
    ) -> list[Result]:
        ids = [f"{prefix}-{i}" for i in range(n)]
        workers = [
            threading.Thread(target=self._worker, args=(ids[k::threads], headers or {}, stop))
            for k in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        out = [r for r in self.results if r.request_id.startswith(prefix + "-")]
        return out


def prediction(body: bytes) -> Any:
    return json.loads(body)["outputs"][0]["data"][0]


def running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"

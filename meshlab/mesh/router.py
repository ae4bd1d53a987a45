"""The local mesh's outbound Envoy (the router): started on the RDS file, read back, recovered.

The router is the one process a rollback needs. :func:`launch_router` starts it on the RDS file
and waits until it serves the version in that file; :func:`read_routes` reads the served routes
back from its admin. :func:`take_down_failed_router` decides whether a rollback must first replace
it: a router that exited, or that the fault watch (or one last probe) found silent, is recorded as
a ``router`` fault and, if still alive (hung or SIGSTOPped, holding the ports), SIGKILLed. The
mesh then launches a new one on the same ports; the RDS file on disk always holds the last routes
the router acknowledged (``apply`` restores it when an update fails), so that is what it serves.
:func:`replace_route_file` writes that file atomically and :func:`await_routes` waits until the
router serves a new version, or restores the previous file and raises.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from meshlab.errors import MeshError
from meshlab.mesh.envoy_bootstrap import outbound_bootstrap
from meshlab.mesh.envoy_process import EnvoyProcess, admin_json, counter, start_envoy
from meshlab.mesh.health import FaultWatch, answers, exit_detail
from meshlab.mesh.processes import ProcessGroup, kill_now, wait_until
from meshlab.spec import Local

APPLY_TIMEOUT_S = 10.0
RDS_FILE = "routes.json"
REJECTED = "http.outbound.rds.meshlab.update_rejected"  # the router's counter of refused updates
LAST_PROBE_S = 2.0  # how long a rollback waits for an admin answer before replacing the router


def read_routes(admin_url: str) -> dict[str, Any] | None:
    """The dynamic route configuration the router serves (its ``config_dump`` entry), if any."""
    dump = admin_json(admin_url, "/config_dump?resource=dynamic_route_configs")
    configs = dump.get("configs") or []
    return dict(configs[0]) if configs else None


def served_version(admin_url: str) -> str | None:
    """The ``version_info`` of the routes the router serves (meshlab's step stamp)."""
    entry = read_routes(admin_url)
    return str(entry.get("version_info")) if entry else None


def version_info(experiment: str, step: str, sequence: int, applied_at: float) -> str:
    """meshlab's step stamp, the ``version_info`` of a route file."""
    return json.dumps(
        {"experiment": experiment, "step": step, "seq": sequence, "appliedAt": applied_at},
        separators=(",", ":"),
    )


def replace_route_file(directory: Path, text: str) -> None:
    """Envoy watches the directory for files *moved* into it: write aside, then rename over."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".routes-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, directory / RDS_FILE)


def await_routes(
    admin_url: str, version: str, rejected: float, started: float, previous: str, step: str,
    directory: Path, log: Path,
) -> float:  # fmt: skip
    """Seconds from ``started`` until the router serves ``version``; if it refuses the update
    (its rejected counter passes ``rejected``) or times out, ``previous`` is written back (the
    file again says what the router serves) and MeshError raised."""
    deadline = started + APPLY_TIMEOUT_S
    while True:
        if served_version(admin_url) == version:
            return time.monotonic() - started
        failed = counter(admin_url, REJECTED) > rejected
        if failed or time.monotonic() > deadline:
            replace_route_file(directory, previous)
            why = (
                "rejected the new routes"
                if failed
                else f"did not load the new routes within {APPLY_TIMEOUT_S:g}s"
            )
            raise MeshError(
                f"step {step}: Envoy {why}; the previous step stays in force (see {log})"
            )
        time.sleep(0.005)


def file_version(rds_file: Path) -> str:
    """The ``version_info`` of the routes in the RDS file (what a new router will serve)."""
    return str(json.loads(rds_file.read_text(encoding="utf-8"))["version_info"])


def launch_router(
    group: ProcessGroup,
    run_dir: Path,
    rds_file: Path,
    endpoints: dict[str, tuple[str, int]],
    ports: tuple[int, int],
    local: Local,
) -> EnvoyProcess:
    """Start the router on ``rds_file`` (ports: listener, admin; 0 = any) until it serves it."""
    version = file_version(rds_file)
    bootstrap = outbound_bootstrap(rds_file, endpoints, *ports)
    router = start_envoy(
        group,
        "outbound",
        bootstrap,
        run_dir,
        local.startup_timeout,
        concurrency=local.envoy_concurrency,
        log_level=local.envoy_log_level,
    )
    wait_until(
        lambda: served_version(router.admin_url) == version,
        APPLY_TIMEOUT_S,
        "the outbound Envoy loaded its routes",
        router.child,
    )
    return router


def take_down_failed_router(router: EnvoyProcess, watch: FaultWatch) -> bool:
    """True if the router failed and is now gone (recorded as a fault); False if it answers."""
    child = router.child
    code = child.exit_code()
    label = f"outbound Envoy (pid {child.pid})"
    known = any(f.component == label for f in watch.faults())  # the watch saw it fail already
    if code is None and not known and answers(router.admin_url + "/ready", LAST_PROBE_S):
        return False
    if code is not None:
        watch.record("router", label, exit_detail(code), time.time())
    else:
        watch.record("router", label, "stopped answering its admin", time.time())
        kill_now(child)  # hung or stopped, it still holds the ports: it has to go
    child.stopped = True  # handled: neither a death to report again nor a process to stop
    return True

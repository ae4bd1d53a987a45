"""The local mesh's arms: each version's model server (started or adopted) and its sidecar Envoy.

An arm is a routed version of the service: the baseline, the candidate and, with ``spec.control``
(issue 13), the control: a second, freshly started instance of the baseline that receives the
candidate's share of traffic, so the candidate is compared with a copy of production under the
same load and of the same age. The control is started from ``spec.local.baseline.command`` on its
own free ports (its placeholders substituted anew), or is the server already running at
``spec.control.url``. Every arm gets its own sidecar Envoy, so its telemetry is its own; the
candidate's and the control's sidecars tap mirrored copies (shadow mode) into ``<tap dir>/<arm>_*``.

:func:`start_model_server` starts one server and returns where it answers; :func:`start_sidecar`
starts the Envoy in front of it. Waiting for readiness and stopping are the caller's
(:class:`meshlab.mesh.local.LocalMesh`), through the shared :class:`ProcessGroup`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from meshlab.freeport import free_port
from meshlab.mesh.envoy_bootstrap import LOOPBACK, inbound_bootstrap
from meshlab.mesh.envoy_process import EnvoyProcess, start_envoy
from meshlab.mesh.processes import Child, ProcessGroup
from meshlab.spec import Experiment, LocalVersion
from meshlab.spec.local import substitute

ArmName = Literal["baseline", "candidate", "control"]
TAPPED: tuple[ArmName, ...] = ("candidate", "control")  # arms whose mirrored copies are recorded


def _substitute(text: str, ports: dict[str, int] | int, here: Path) -> str:
    named = {"": ports} if isinstance(ports, int) else ports
    return substitute(text, named, sys.executable, str(here))


def arm_versions(experiment: Experiment) -> dict[ArmName, LocalVersion]:
    """How to start or reach each arm's server, in start order (control last, when there is one).

    The control is the baseline's ``command`` again (a second instance, its own ports), or the
    server at ``spec.control.url``.
    """
    local = experiment.spec.local
    assert local is not None  # LocalMesh refuses a spec without it
    out: dict[ArmName, LocalVersion] = {"baseline": local.baseline, "candidate": local.candidate}
    control = experiment.spec.control
    if control is not None:
        out["control"] = LocalVersion(url=control.url) if control.url else local.baseline
    return out


def arm_subsets(experiment: Experiment) -> dict[str, ArmName]:
    """``{subset: arm}`` of the arms this experiment routes to."""
    spec = experiment.spec
    out: dict[str, ArmName] = {spec.baseline.subset: "baseline", spec.candidate.subset: "candidate"}
    control = spec.control_version
    if control is not None:
        out[control.subset] = "control"
    return out


def arm_labels(experiment: Experiment) -> dict[str, Mapping[str, str]]:
    """``{subset: pod labels}`` of the versions the experiment routes to (control included)."""
    spec = experiment.spec
    versions = [spec.baseline, spec.candidate]
    control = spec.control_version
    if control is not None:
        versions.append(control)
    return {v.subset: v.labels for v in versions}


@dataclass(frozen=True)
class ArmServer:
    """One arm's model server: where it answers, what to poll, and its process (None if adopted)."""

    arm: ArmName
    url: str
    ready_url: str | None
    child: Child | None


def start_model_server(
    group: ProcessGroup, arm: ArmName, version: LocalVersion, here: Path, run_dir: Path
) -> ArmServer:
    """Start ``arm``'s server from its ``command`` on fresh free ports, or adopt its ``url``."""
    if version.url is not None:
        return ArmServer(arm, version.url.rstrip("/"), None, None)
    assert version.command is not None and version.ready_url is not None  # spec-validated
    ports = {name: free_port() for name in version.port_names}  # {port}, {port:grpc}...
    argv = [_substitute(a, ports, here) for a in version.command]
    env = {k: _substitute(v, ports, here) for k, v in version.env.items()}
    child = group.start(
        f"{arm} model server", argv, run_dir / f"{arm}.model.log", env=env, cwd=here
    )
    url = f"http://{LOOPBACK}:{ports['']}"
    return ArmServer(arm, url, _substitute(version.ready_url, ports, here), child)


def start_sidecar(
    group: ProcessGroup,
    server: ArmServer,
    service_port: int,
    tap_dir: Path | None,
    run_dir: Path,
    timeout: float,
    log_level: str,
) -> EnvoyProcess:
    """The arm's inbound Envoy in front of its server; ``tap_dir`` records its mirrored copies."""
    parts = urlsplit(server.url)
    tap = tap_dir / server.arm if tap_dir is not None and server.arm in TAPPED else None
    bootstrap = inbound_bootstrap(service_port, parts.hostname or LOOPBACK, parts.port or 80, tap)
    return start_envoy(
        group, f"{server.arm}-sidecar", bootstrap, run_dir, timeout, log_level=log_level
    )

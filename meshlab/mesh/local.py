"""The local mesh backend: real Envoy in front of local model servers, routed by the VirtualService.

:class:`LocalMesh` implements :class:`~meshlab.mesh.base.MeshBackend` for one experiment. ``start``
launches (or adopts, for ``url:`` versions) every arm's model server, the control's too when the
spec has one (:mod:`meshlab.mesh.local_arms`), one inbound Envoy per arm (its sidecar, with its own
admin/telemetry and, for the candidate and the control, a tap of mirrored responses) and the
outbound Envoy whose routes come from the step's plan, rendered in the experiment's routing API
(VirtualService or HTTPRoute, both translated to the same Envoy routes), through file-based RDS. ``apply`` writes
a new route file atomically (temporary file + rename in the watched directory) and returns once
Envoy's admin reports the new version, so traffic is never without a route; a configuration Envoy
rejects is reverted and raised as :class:`~meshlab.errors.MeshError`. Every process is stopped on
``close``, on leaving the ``with`` block (exceptions included) and at interpreter exit.

Faults: a :class:`~meshlab.mesh.health.FaultWatch` probes every process while the mesh runs, and
``faults()`` names the ones that died or stopped answering, by role. A forward step is refused on a
faulty mesh, but ``rollback`` needs the outbound Envoy alone: if that Envoy died or stopped
answering, it is restarted on the same ports from the last routes it acknowledged (the RDS file on
disk), and then the rollback is applied and read back.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from meshlab.errors import ConfigError, MeshError
from meshlab.manifests import Manifest, RoutingPlan, Step, step_plan
from meshlab.manifests import rollback as rollback_step
from meshlab.mesh.base import Fault, MeshRun, RoutingState, RunContext
from meshlab.mesh.envoy_bootstrap import INBOUND_LISTENER, LOOPBACK, OUTBOUND_LISTENER
from meshlab.mesh.envoy_config import cluster_name, discovery_response, referenced_clusters
from meshlab.mesh.envoy_httproute import step_route_configuration, step_subsets
from meshlab.mesh.envoy_process import EnvoyProcess, counter
from meshlab.mesh.health import Component, FaultWatch, ProbeSettings
from meshlab.mesh.local_arms import (
    TAPPED,
    ArmName,
    ArmServer,
    arm_labels,
    arm_subsets,
    arm_versions,
    start_model_server,
    start_sidecar,
)
from meshlab.mesh.processes import ProcessGroup, http_ok, wait_until
from meshlab.mesh.router import (
    RDS_FILE,
    REJECTED,
    await_routes,
    launch_router,
    read_routes,
    replace_route_file,
    take_down_failed_router,
    version_info,
)
from meshlab.mesh.tap import TapReader
from meshlab.registry import routing_renderer
from meshlab.samples import Sample
from meshlab.spec import Experiment, Local
from meshlab.spec.load import parse_extractor

__all__ = ["RDS_FILE", "LocalMesh"]
_LIVE: weakref.WeakSet[LocalMesh] = weakref.WeakSet()


class LocalMesh:
    """An experiment's local mesh. Use as ``with LocalMesh(exp).start(step) as mesh: ...``."""

    name = "local"

    def __init__(
        self,
        experiment: Experiment,
        *,
        here: Path | None = None,
        run_dir: Path | None = None,
        keep_run_dir: bool = False,
        capture_mirrored: bool | None = None,
        probe: ProbeSettings | None = None,
    ) -> None:
        if experiment.spec.local is None:
            raise ConfigError(
                "spec.local: the local mesh needs a 'local' section saying how to start or reach "
                "each version (see examples/canary.yaml)"
            )
        self.experiment = experiment
        self.local: Local = experiment.spec.local
        self.here = (here or Path.cwd()).resolve()
        self._own_run_dir = run_dir is None
        self.run_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="meshlab-mesh-"))
        self.keep_run_dir = keep_run_dir
        # Tap files pile up until mirrored_samples() drains them: capture only for a consumer.
        self.capture_mirrored = (
            self.local.capture_mirrored if capture_mirrored is None else capture_mirrored
        )
        self.group = ProcessGroup(grace=self.local.stop_timeout)
        self.model_urls: dict[str, str] = {}
        self.sidecars: dict[str, EnvoyProcess] = {}
        self.outbound: EnvoyProcess | None = None
        self._clusters: set[str] = set()
        self._sequence = 0
        self._taps: list[TapReader] = []
        self.servers: dict[ArmName, ArmServer] = {}
        self._closed = False
        self.last_apply_seconds: float | None = None  # rename -> Envoy reports the new version
        self.router_restarts = 0  # times rollback restarted a dead or hung outbound Envoy
        self._watch = FaultWatch(probe)
        self._router: Component | None = None
        self._endpoints: dict[str, tuple[str, int]] = {}

    @classmethod
    def for_run(cls, experiment: Experiment, run: RunContext) -> MeshRun:
        """A started mesh for ``meshlab start`` (the registry's uniform factory), routing rollback."""
        mesh = cls(experiment, here=run.spec_dir, run_dir=run.run_dir, keep_run_dir=True)
        mesh.start()
        return MeshRun(mesh, mesh.mirrored_samples, mesh.url)

    # ----------------------------------------------------------------------------- lifecycle
    def start(self, step: Step | None = None) -> LocalMesh:
        """Start everything and route as ``step`` says (default: all traffic to the baseline)."""
        if self.group.children or self._closed:
            raise MeshError("this local mesh was started already; build a new LocalMesh")
        _LIVE.add(self)
        try:
            self._start(step or rollback_step())
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, step: Step) -> None:
        timeout = self.local.startup_timeout
        (self.run_dir / "rds").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "tap").mkdir(parents=True, exist_ok=True)
        servers = [
            start_model_server(self.group, arm, version, self.here, self.run_dir)
            for arm, version in arm_versions(self.experiment).items()
        ]
        tap_dir = self.run_dir / "tap" if self.capture_mirrored else None
        for server in servers:  # sidecars start while the model servers load their models
            self.servers[server.arm] = server
            self.model_urls[server.arm] = server.url
            self.sidecars[server.arm] = start_sidecar(
                self.group,
                server,
                self.experiment.spec.service.port,
                tap_dir,
                self.run_dir,
                timeout,
                self.local.envoy_log_level,
            )
        for server in servers:
            if server.child is not None and server.ready_url is not None:
                which = "baseline" if server.arm == "control" else server.arm  # its command's
                wait_until(
                    functools.partial(http_ok, server.ready_url),
                    timeout,
                    f"spec.local.{which}.readyUrl {server.ready_url} answered 2xx"
                    + (" (the control arm)" if server.arm == "control" else ""),
                    server.child,
                )
        if tap_dir is not None:
            path = parse_extractor(self.experiment.spec.load.extractor_path)
            self._taps = [
                TapReader(tap_dir, arm, arm, path)
                for arm in TAPPED
                if arm in {server.arm for server in servers}
            ]
        self._start_outbound(step_plan(self.experiment, step))
        self._watch_all()

    def _watch_all(self) -> None:
        for arm, server in self.servers.items():
            # A control that fails is infrastructure (role "control"), never the candidate's fault.
            probe = server.ready_url or server.url
            where = "" if server.child is not None else server.url
            self._watch.watch(arm, f"{arm} model server", server.child, probe, where)
            sidecar = self.sidecars[arm]
            self._watch.watch(
                arm, f"{arm} sidecar Envoy", sidecar.child, sidecar.admin_url + "/ready"
            )
        assert self.outbound is not None
        self._router = self._watch.watch(
            "router", "outbound Envoy", self.outbound.child, self.outbound.admin_url + "/ready"
        )

    @property
    def versions(self) -> dict[str, Mapping[str, str]]:
        """``{subset: pod labels}`` of the versions this mesh runs (baseline, candidate, control)."""
        return arm_labels(self.experiment)

    def _render(self, plan: RoutingPlan) -> list[Manifest]:
        """The plan's objects in the experiment's routing API (what a cluster would be given)."""
        return routing_renderer(self.experiment.spec.target.routing)(plan)

    def _start_outbound(self, plan: RoutingPlan) -> None:
        spec = self.experiment.spec
        docs = self._render(plan)
        subset_arm = arm_subsets(self.experiment)
        endpoints: dict[str, tuple[str, int]] = {}
        for subset in step_subsets(docs, self.versions):
            sidecar = self.sidecars[subset_arm[subset]]
            name = cluster_name(spec.service.host, spec.service.port, subset)
            endpoints[name] = (LOOPBACK, sidecar.listener_ports[INBOUND_LISTENER])
        self._clusters = set(endpoints)
        self._endpoints = endpoints
        self._write_routes(plan, docs)
        self._launch_outbound((self.local.listen_port, self.local.admin_port))

    def _launch_outbound(self, ports: tuple[int, int]) -> None:
        self.outbound = launch_router(
            self.group,
            self.run_dir,
            self.run_dir / "rds" / RDS_FILE,
            self._endpoints,
            ports,
            self.local,
        )

    def close(self) -> None:
        """Stop every process this mesh started (idempotent); routing state dies with Envoy."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        self._watch.close()  # first, so that stopping the processes is not reported as faults
        self.group.stop_all()
        if self._own_run_dir and not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> LocalMesh:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------ routing
    def _write_routes(self, plan: RoutingPlan, docs: Sequence[Manifest]) -> str:
        config = step_route_configuration(docs, self.experiment.spec.service.host, self.versions)
        unknown = referenced_clusters(config) - self._clusters
        if unknown:
            raise MeshError(
                f"the routes use {sorted(unknown)[0]}, which is not a cluster of the "
                "local mesh (its versions are fixed at start)"
            )
        self._sequence += 1
        version = version_info(
            self.experiment.metadata.name, plan.step, self._sequence, time.time()
        )
        replace_route_file(self.run_dir / "rds", json.dumps(discovery_response(config, version)))
        return version

    def apply(self, plan: RoutingPlan) -> None:
        """Route as ``plan`` says; returns once Envoy serves it. All or nothing.

        A forward step is refused while any component is faulty; a rollback step is applied
        whatever else failed, restarting the outbound Envoy first if it died or hangs.
        """
        if self.outbound is None or self._closed:
            raise MeshError("the local mesh is not running; call start() first")
        if plan.step == "rollback":
            self._ensure_router()
        else:
            self.check()
        self._apply_routes(plan, self._render(plan))

    def _apply_routes(self, plan: RoutingPlan, docs: Sequence[Manifest]) -> None:
        assert self.outbound is not None
        admin = self.outbound.admin_url
        rejected = counter(admin, REJECTED)
        previous = (self.run_dir / "rds" / RDS_FILE).read_text(encoding="utf-8")
        started = time.monotonic()
        version = self._write_routes(plan, docs)
        self.last_apply_seconds = await_routes(
            admin, version, rejected, started, previous, plan.step,
            self.run_dir / "rds", self.run_dir / "outbound.log",
        )  # fmt: skip

    def status(self) -> RoutingState | None:
        """The step Envoy serves now, read back from its admin endpoint."""
        if self.outbound is None or self._closed:
            return None
        entry = read_routes(self.outbound.admin_url)
        if entry is None:
            return None
        try:
            info = json.loads(str(entry.get("version_info")))
        except ValueError:
            return None
        if info.get("experiment") != self.experiment.metadata.name:
            return None
        return RoutingState(str(info["experiment"]), str(info["step"]), float(info["appliedAt"]))

    def rollback(self) -> None:
        """All traffic to the baseline, no mirror; needs only the outbound Envoy (restarted if dead)."""
        self.apply(step_plan(self.experiment, rollback_step()))

    def _ensure_router(self) -> None:
        """Make sure the outbound Envoy answers; else restart it on its ports from its last routes."""
        assert self.outbound is not None
        if not take_down_failed_router(self.outbound, self._watch):
            return
        if self._router is not None:
            self._watch.forget(self._router)
        listen = self.outbound.listener_ports[OUTBOUND_LISTENER]
        try:
            self._launch_outbound((listen, urlsplit(self.outbound.admin_url).port or 0))
        except MeshError as exc:
            raise MeshError(
                f"the outbound Envoy died and could not be restarted on 127.0.0.1:{listen}: {exc}"
            ) from exc
        self.router_restarts += 1
        self._router = self._watch.watch(
            "router", "outbound Envoy", self.outbound.child, self.outbound.admin_url + "/ready"
        )

    def faults(self) -> list[Fault]:
        """Components that died or stopped answering since the start, oldest first."""
        return self._watch.faults()

    # ---------------------------------------------------------------------------- telemetry
    @property
    def url(self) -> str:
        """Where clients send requests: the outbound Envoy's listener."""
        if self.outbound is None:
            raise MeshError("the local mesh is not started; call start() first")
        return f"http://{LOOPBACK}:{self.outbound.listener_ports[OUTBOUND_LISTENER]}"

    @property
    def admin_urls(self) -> dict[str, str]:
        """Envoy admin URLs: ``outbound`` (the routing proxy), ``baseline`` and ``candidate``."""
        out = {arm: s.admin_url for arm, s in self.sidecars.items()}
        if self.outbound is not None:
            out = {"outbound": self.outbound.admin_url, **out}
        return out

    @property
    def prometheus_urls(self) -> dict[str, str]:
        """``/stats/prometheus`` of each Envoy, keyed like :attr:`admin_urls`."""
        return {name: f"{url}/stats/prometheus" for name, url in self.admin_urls.items()}

    @property
    def pids(self) -> dict[str, int]:
        """Process id (and process group id) of every child, by name."""
        return self.group.pids

    def mirrored_samples(self, settle: float = 0.0) -> list[Sample]:
        """Mirrored copies the candidate (and the control) answered since the last call.

        Sorted by start time; ``settle`` holds back copies younger than that many seconds so that
        rows from successive calls stay in order (see :meth:`TapReader.drain`).
        """
        rows = [row for tap in self._taps for row in tap.drain(settle)]
        return sorted(rows, key=lambda s: s.timestamp)

    def check(self) -> None:
        """MeshError if a child process died on its own or a component stopped answering."""
        dead = self.group.dead()
        if dead:
            raise MeshError(f"the local mesh lost a process: {dead[0].describe_exit()}")
        faults = self.faults()
        if faults:
            raise MeshError(f"the local mesh has a fault: {faults[0].describe()}")

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until a child dies (its description) or ``timeout`` passes (None)."""
        child = self.group.wait_any_exit(timeout)
        return child.describe_exit() if child is not None else None


@atexit.register
def _close_all() -> None:  # an uncaught exception or sys.exit still stops every child
    for mesh in list(_LIVE):
        mesh.close()

"""Live sample sources for the controller, adapting the load runner and the local mesh.

Each is a :class:`~meshlab.live.LiveSamples` with a watermark, and a run's sources meet in one
:class:`~meshlab.live.MergedSamples` (late rows counted, fed on arrival; see :mod:`meshlab.live`).
:class:`LoadSamples` drains :meth:`meshlab.load.LoadRun.batches` on a background thread into a
queue, so the controller can poll with a timeout while Locust runs in its own processes; its
watermark is the one the Locust processes report. :class:`TapSamples` is the mirrored copies the
local mesh's tap captured, and :class:`LocalMeshSamples` merges the two (shadow mode). In a
cluster shadow test :func:`collector_source` adds the shadow's predictions from the collector
(:mod:`meshlab.collector.run`), whose listener lives exactly as long as the run.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from meshlab.clock import Clock
from meshlab.errors import ConfigError, LoadError
from meshlab.experiment.ports import LiveSamples, Snapshot
from meshlab.live import MergedSamples
from meshlab.load import LoadRun
from meshlab.manifests import first_split, steady_split
from meshlab.samples import Sample, Samples
from meshlab.spec import Experiment
from meshlab.stats import Comparison
from meshlab.stats.design import compared_share


class LoadSamples:
    """The rows a :class:`LoadRun` records, as a pollable :class:`LiveSamples`."""

    def __init__(self, run: LoadRun, poll: float = 0.1) -> None:
        self.run = run
        Item = tuple[list[Sample], float] | BaseException | None
        self._queue: queue.Queue[Item] = queue.Queue()
        self._done = threading.Event()
        self._watermark = -math.inf
        self._thread = threading.Thread(
            target=self._pump, args=(poll,), daemon=True, name="meshlab-load-samples"
        )
        self._thread.start()

    def _pump(self, poll: float) -> None:
        try:
            for batch in self.run.batches(poll=poll):
                # The load's own late rows are handed on as rows: the run's merge counts them.
                self._queue.put(([*batch.samples, *batch.late], batch.watermark))
        except BaseException as exc:  # handed to the controller's thread, raised there
            self._queue.put(exc)
        finally:
            self._queue.put(None)

    def poll(self, timeout: float) -> list[Sample]:
        out: list[Sample] = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is None:
                    self._done.set()
                elif isinstance(item, ConfigError):
                    raise item  # bad input the Locust side found: exit 2, not a load failure
                elif isinstance(item, BaseException):
                    raise LoadError(f"the load generator failed: {item}") from item
                else:
                    out.extend(item[0])
                    self._watermark = max(self._watermark, item[1])
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return out

    @property
    def watermark(self) -> float:
        """The Locust processes' promise, as of the rows polled so far."""
        return math.inf if self.finished else self._watermark

    @property
    def finished(self) -> bool:
        return self._done.is_set() and self._queue.empty()

    def stop(self) -> None:
        self.run.stop()

    def after_rollback(self) -> None:
        """Nothing to do: the load's rows never depend on the routes."""

    def join(self, timeout: float) -> None:
        """Wait for the pump thread after :meth:`stop` (the run drains its last rows)."""
        self._thread.join(timeout)


class TapSamples:
    """The candidate's mirrored copies the local mesh's tap captured, drained on every poll.

    A tap trace is written when the mirrored response completes, so a copy shows up at most its
    latency after it started: the watermark is ``lag`` seconds before the last drain. A copy
    slower than ``lag`` is late (counted by the merge, fed on arrival); a longer lag holds every
    row that much longer before the statistics see it. After ``ended()`` (the load is over) the
    source keeps draining for ``lag`` seconds, for the copies still in flight.
    """

    def __init__(
        self,
        mirrored: Callable[[], list[Sample]],
        ended: Callable[[], bool],
        *,
        lag: float = 1.0,
        wall: Clock = time.time,
    ) -> None:
        if lag < 0:
            raise ValueError("lag must be >= 0 seconds")
        self.mirrored = mirrored
        self.ended = ended
        self.lag = lag
        self._wall = wall
        self._watermark = -math.inf
        self._ended_at: float | None = None
        self._done = False

    def poll(self, timeout: float) -> list[Sample]:
        now = self._wall()
        if self._ended_at is None and self.ended():
            self._ended_at = now
        rows = self.mirrored()  # everything captured up to now (files of finished copies)
        self._watermark = max(self._watermark, now - self.lag)
        if self._ended_at is not None and now >= self._ended_at + self.lag:
            self._done = True
        return rows

    @property
    def watermark(self) -> float:
        return math.inf if self._done else self._watermark

    @property
    def finished(self) -> bool:
        return self._done

    def stop(self) -> None:
        """Nothing to stop: the mesh owns the tap (the load's stop ends the traffic)."""

    def after_rollback(self) -> None:
        """Nothing to do: the tap's rows never fail a rollback."""


class LocalMeshSamples(MergedSamples):
    """Load rows plus the candidate's mirrored copies captured by the local mesh, merged in order."""

    def __init__(
        self, load: LiveSamples, mirrored: Callable[[], list[Sample]], *, lag: float = 1.0
    ) -> None:
        super().__init__(
            {"load": load, "tap": TapSamples(mirrored, lambda: load.finished, lag=lag)}
        )


def uses_collector(experiment: Experiment) -> bool:
    """Whether the shadow's predictions come from the collector.

    Always in a cluster shadow test (Istio drops mirrored answers); on the local mesh when
    ``metrics.source: collector`` asks for the cluster's path (the tap's captures are posted to the
    collector per its contract), or when a shadow test with ``source: prometheus`` names a
    collector (latency and errors from Prometheus, the predictions from the collector).
    """
    spec = experiment.spec
    if spec.metrics.source == "collector":
        return True
    if spec.strategy != "shadow":
        return False
    return spec.target.kind == "kubernetes" or (
        spec.metrics.source == "prometheus" and spec.metrics.collector is not None
    )


def check_collector(experiment: Experiment) -> None:
    """Refuse, before anything starts, a cluster shadow test that could never see the shadow.

    Istio drops the responses of mirrored requests, so without the collector the candidate would
    have no rows at all and the test could never pass. ``source: prometheus`` with the collector is
    accepted: latency and errors from Prometheus, divergence from the collector's pairs, one merge
    (:func:`meshlab.experiment.live_sources.collector_source`, :func:`analysis_core`).
    """
    spec = experiment.spec
    if not uses_collector(experiment):
        return
    if spec.metrics.collector is None and spec.target.kind == "kubernetes":
        raise ConfigError(
            "spec.metrics.collector: a shadow test on Kubernetes reads the shadow's predictions "
            "from the collector (Istio drops mirrored responses); add metrics.collector: "
            "{url: http://meshlab-collector.<namespace>.svc:8080} and apply the collector.yaml "
            "(and logger patches) that 'meshlab render --all -o DIR' then writes"
        )


def collector_source(
    experiment: Experiment,
    load: LiveSamples,
    mirrored: Callable[[], list[Sample]],
    run_dir: Path,
    closers: list[Callable[[], None]],
    *,
    also: Mapping[str, LiveSamples] | None = None,
    timings: str | None = None,
) -> LiveSamples:
    """Start the collector for this run; its close (listener down, counts written) is a closer.

    On the local mesh the tap's captures of the shadow's answers are posted to it by a
    :class:`~meshlab.collector.forward.TapForwarder` (closed first, after one last drain).
    ``also`` joins the run's one merge (Prometheus's deltas); ``timings`` is what the report says
    fed which metric (default: the load's responses and the collector's timings).
    """
    from meshlab.collector.run import TIMINGS_SAMPLES, RunCollector
    from meshlab.spec.metrics import CollectorSpec

    spec = experiment.spec.metrics.collector
    if spec is None:  # the local mesh: loopback, any free port
        assert experiment.spec.target.kind == "local"  # check_collector refused the rest
        spec = CollectorSpec(port=0)
    run = RunCollector(
        spec,
        run_dir,
        timings=timings or TIMINGS_SAMPLES,
        control=experiment.spec.control is not None,
    )
    closers.append(run.close)  # before start: a failed bind still writes its counts
    live = run.start(load, settle=max(5.0, min(spec.ttl, 30.0)), also=also)
    if experiment.spec.target.kind == "local":
        from meshlab.collector.forward import TapForwarder

        token = run.collector.token
        forwarder = TapForwarder(
            mirrored, run.collector.url, authorization=token.authorization() if token else None
        )
        closers.append(forwarder.close)
        forwarder.start()
    return live


def analysis_core(
    experiment: Experiment,
    analysis: Any,
    mode: str,
    bounds: Callable[[], Sequence[float]] | None,
    *,
    control: bool = False,
) -> Any:
    """The comparison one phase runs, for the rows the run's live source gives it.

    Raw rows: :class:`~meshlab.stats.Comparison` (``control``: candidate against the control
    arm). Prometheus's pseudo-samples (``bounds``): :class:`~meshlab.metrics.BracketedComparison`.
    Both in one stream (``source: prometheus`` with the collector):
    :class:`~meshlab.metrics.sourced.SourcedComparison`, latency and errors from Prometheus,
    divergence from the collector's pairs. ``control`` reaches every part: the control arm's own
    Prometheus series (arm 2) and its rows.
    """
    if bounds is None:
        share, steady = planned_share(experiment, mode, control), steady_split(experiment)
        return Comparison(analysis, mode, control=control, candidate_share=share, steady=steady)  # type: ignore[arg-type]
    if uses_collector(experiment):
        from meshlab.metrics.sourced import SourcedComparison

        return SourcedComparison(analysis, mode, bounds=bounds, control=control)  # type: ignore[arg-type]
    from meshlab.metrics import BracketedComparison

    return BracketedComparison(analysis, mode, bounds=bounds, control=control)  # type: ignore[arg-type]


def planned_share(experiment: Experiment, mode: str, control: bool) -> float | None:
    """The candidate's share of the compared canary requests in the plan's first weighted step.

    The comparison tunes each arm's bound to it before any data (``Comparison(candidate_share)``);
    None where the split is not known in advance (shadow, blue/green, A/B).
    """
    weight = first_split(experiment) if mode == "canary" else None
    return None if weight is None else compared_share(weight, control)


class StatsAnalyzer:
    """The controller's :class:`Analyzer` over :class:`meshlab.stats.Comparison`."""

    def __init__(self, comparison: Comparison, to_json: Callable[[Any], dict[str, Any]]) -> None:
        self.comparison = comparison
        self._to_json = to_json
        self._arms = {"baseline": 0, "candidate": 0, "control": 0}

    def update(self, samples: Sequence[Sample]) -> None:
        sourced = getattr(self.comparison, "sourced", False)
        if samples and not sourced and not isinstance(self.comparison, Comparison):
            # Prometheus's pseudo-samples: raw rows beside them would count requests twice
            from meshlab.metrics.sourced import PSEUDO_PREFIX

            kinds = {s.request_id.startswith(PSEUDO_PREFIX) for s in samples}
            if len(kinds) == 2:  # Prometheus's and raw rows in one stream: never count twice
                raise RuntimeError(
                    "Prometheus pseudo-samples and raw rows reached one comparison; the analyzer "
                    "must be analysis_core(...)'s SourcedComparison (meshlab.experiment.run)"
                )
        if samples:
            for s in samples:
                if s.arm in self._arms:  # control rows are compared, not counted as an arm here
                    self._arms[s.arm] += 1
            self.comparison.update(Samples.from_rows(sorted(samples, key=lambda s: s.timestamp)))

    def snapshot(self) -> Snapshot:
        assessment = self.comparison.assess()
        data = self._to_json(assessment)
        guarantee = " ".join(sorted({m.guarantee for m in assessment.metrics}))
        return Snapshot(
            verdict=assessment.verdict.outcome,
            metrics=data["metrics"],
            n_baseline=self._arms["baseline"],
            n_candidate=self._arms["candidate"],
            reasons=list(assessment.verdict.reasons),
            guarantee=guarantee,
            n_control=self._arms["control"],
        )

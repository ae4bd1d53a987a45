"""Live sample sources for the controller, adapting the load runner and the local mesh.

:class:`LoadSamples` drains :meth:`meshlab.load.LoadRun.batches` on a background thread into a
queue, so the controller can poll with a timeout while Locust runs in its own processes.
:class:`LocalMeshSamples` adds the mirrored copies the local mesh's tap captured (shadow mode).
In a cluster shadow test :func:`collector_source` adds the shadow's predictions from the collector
(:mod:`meshlab.collector.run`), whose listener lives exactly as long as the run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshlab.errors import ConfigError, LoadError
from meshlab.experiment.ports import LiveSamples, Snapshot
from meshlab.load import LoadRun
from meshlab.samples import Sample, Samples
from meshlab.spec import Experiment
from meshlab.stats import Comparison


class LoadSamples:
    """The rows a :class:`LoadRun` records, as a pollable :class:`LiveSamples`."""

    def __init__(self, run: LoadRun, poll: float = 0.1) -> None:
        self.run = run
        self._queue: queue.Queue[list[Sample] | BaseException | None] = queue.Queue()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._pump, args=(poll,), daemon=True, name="meshlab-load-samples"
        )
        self._thread.start()

    def _pump(self, poll: float) -> None:
        try:
            for batch in self.run.batches(poll=poll):
                rows = list(batch.samples) + list(batch.late)
                if rows:
                    self._queue.put(rows)
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
                    out.extend(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return out

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


class LocalMeshSamples:
    """Load rows plus the candidate's mirrored copies captured by the local mesh."""

    def __init__(self, load: LiveSamples, mirrored: Callable[[], list[Sample]]) -> None:
        self.load = load
        self.mirrored = mirrored

    def poll(self, timeout: float) -> list[Sample]:
        rows = self.load.poll(timeout) + self.mirrored()
        return sorted(rows, key=lambda s: s.timestamp)

    @property
    def finished(self) -> bool:
        return self.load.finished

    def stop(self) -> None:
        self.load.stop()

    def after_rollback(self) -> None:
        self.load.after_rollback()


def uses_collector(experiment: Experiment) -> bool:
    """Whether the shadow's predictions come from the collector.

    Always in a cluster shadow test (Istio drops mirrored answers); on the local mesh when
    ``metrics.source: collector`` asks for the cluster's path (the tap's captures are posted to the
    collector per its contract).
    """
    spec = experiment.spec
    if spec.metrics.source == "collector":
        return True
    return spec.target.kind == "kubernetes" and spec.strategy == "shadow"


def check_collector(experiment: Experiment) -> None:
    """Refuse, before anything starts, a cluster shadow test that could never see the shadow.

    Istio drops the responses of mirrored requests, so without the collector the candidate would
    have no rows at all and the test could never pass.
    """
    spec = experiment.spec
    if not uses_collector(experiment):
        return
    if spec.metrics.collector is None and spec.target.kind == "kubernetes":
        raise ConfigError(
            "spec.metrics.collector: a shadow test on Kubernetes reads the shadow's predictions "
            "from the collector (Istio drops mirrored responses); add metrics.collector: "
            "{url: http://meshlab-collector.<namespace>.svc:8080} and apply what "
            "'meshlab render --collector' writes"
        )
    if spec.metrics.source == "prometheus":
        raise ConfigError(
            f"spec.metrics.source: {spec.metrics.source} cannot yet be combined with the "
            "collector in a shadow test; use source: samples (the primary's latency and errors "
            "from the load generator, the shadow's from the collector's timings)"
        )


def collector_source(
    experiment: Experiment,
    load: LiveSamples,
    mirrored: Callable[[], list[Sample]],
    run_dir: Path,
    closers: list[Callable[[], None]],
) -> LiveSamples:
    """Start the collector for this run; its close (listener down, counts written) is a closer.

    On the local mesh the tap's captures of the shadow's answers are posted to it by a
    :class:`~meshlab.collector.forward.TapForwarder` (closed first, after one last drain).
    """
    from meshlab.collector.run import RunCollector
    from meshlab.spec.metrics import CollectorSpec

    spec = experiment.spec.metrics.collector
    if spec is None:  # the local mesh: loopback, any free port
        assert experiment.spec.target.kind == "local"  # check_collector refused the rest
        spec = CollectorSpec(port=0)
    run = RunCollector(spec, run_dir, control=experiment.spec.control is not None)
    closers.append(run.close)  # before start: a failed bind still writes its counts
    live = run.start(load, settle=max(5.0, min(spec.ttl, 30.0)))
    if experiment.spec.target.kind == "local":
        from meshlab.collector.forward import TapForwarder

        token = run.collector.token
        forwarder = TapForwarder(
            mirrored, run.collector.url, authorization=token.authorization() if token else None
        )
        closers.append(forwarder.close)
        forwarder.start()
    return live


class StatsAnalyzer:
    """The controller's :class:`Analyzer` over :class:`meshlab.stats.Comparison`."""

    def __init__(self, comparison: Comparison, to_json: Callable[[Any], dict[str, Any]]) -> None:
        self.comparison = comparison
        self._to_json = to_json
        self._arms = {"baseline": 0, "candidate": 0, "control": 0}

    def update(self, samples: Sequence[Sample]) -> None:
        if samples:
            for s in samples:
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

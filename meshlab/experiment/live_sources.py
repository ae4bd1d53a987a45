"""The live sample sources ``spec.metrics.source`` names in :mod:`meshlab.registry`, one factory each.

Every factory has the same signature, so ``meshlab start`` builds whichever the spec names without
knowing it: ``(experiment, load, mirrored, closers, run_dir) -> (live source, bucket bounds or
None)``.
``load`` is the load generator's rows, ``mirrored`` drains the mesh's mirrored copies, ``closers``
collects what must be closed at the end; the bounds are the latency histogram's bucket bounds for
a source that reports buckets only (None: raw samples).

``samples``
    The load generator's own rows plus the mirrored copies the mesh captured.
``prometheus``
    Istio's (or the local Envoy's) metrics from Prometheus, polled every ``interval``; fails at
    once if Prometheus does not answer.
``collector``
    The load generator's primaries, and the shadow's predictions as the collector receives them
    (KServe's payload logger in a cluster; the tap's captures posted to it on the local mesh).
    With ``source: prometheus`` in a shadow test, Prometheus's deltas join the same merge and feed
    latency and errors, the collector's pairs the divergence (the analyzer is then
    :func:`meshlab.experiment.sources.analysis_core`'s ``SourcedComparison``).

Whatever the source, the run reads one :class:`~meshlab.live.MergedSamples`: every stream with its
watermark in one ordered merge, late rows counted (``late``, ``late_by_source``) and fed on
arrival.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from meshlab.experiment.ports import LiveSamples
from meshlab.experiment.sources import LoadSamples, LocalMeshSamples
from meshlab.live import MergedSamples
from meshlab.samples import Sample
from meshlab.spec import Experiment

Bounds = Callable[[], Sequence[float]] | None
LiveSource = tuple[LiveSamples, Bounds]


def samples_source(
    experiment: Experiment,
    load: LoadSamples,
    mirrored: Callable[[], list[Sample]],
    closers: list[Callable[[], None]],
    run_dir: Path,
) -> LiveSource:
    """Raw samples: the load generator's rows and, in a shadow test, the mesh's mirrored copies.

    Only a shadow step mirrors: elsewhere the tap would add nothing but its lag to every row (an
    abort reached a second later is a second more of users on a bad candidate).
    """
    if experiment.spec.strategy != "shadow":
        return MergedSamples({"load": load}), None
    return LocalMeshSamples(load, mirrored), None


def _prometheus(
    experiment: Experiment,
    load: LoadSamples,
    closers: list[Callable[[], None]],
    *,
    drain_load: bool,
) -> tuple[LiveSamples, Bounds]:
    """The Prometheus deltas as one live source, and the bucket bounds they sit on."""
    from meshlab.metrics import DEFAULT_BUCKETS_MS, Outage, PrometheusLiveSamples, from_experiment

    prom = experiment.spec.metrics.prometheus
    backend = from_experiment(experiment, prom.queries)
    closers.append(backend.close)
    backend.check()
    live = PrometheusLiveSamples(
        backend,
        load,
        interval=prom.interval,
        outage=Outage(prom.grace_period),
        settle=prom.interval,
        drain_load=drain_load,
    )
    return live, lambda: backend.bounds or DEFAULT_BUCKETS_MS


def prometheus_source(
    experiment: Experiment,
    load: LoadSamples,
    mirrored: Callable[[], list[Sample]],
    closers: list[Callable[[], None]],
    run_dir: Path,
) -> LiveSource:
    """Prometheus, as ``spec.metrics.prometheus`` configures it; the classified MetricsError if it
    cannot be used (unreachable, a bad query, or "check the token"). The load's rows are drained
    and counted, not analysed."""
    live, bounds = _prometheus(experiment, load, closers, drain_load=True)
    return MergedSamples({"prometheus": live}), bounds


def collector_source(
    experiment: Experiment,
    load: LoadSamples,
    mirrored: Callable[[], list[Sample]],
    closers: list[Callable[[], None]],
    run_dir: Path,
) -> LiveSource:
    """The collector, started from ``spec.metrics.collector`` and closed with the run; with
    ``source: prometheus``, Prometheus's deltas in the same merge (latency and errors)."""
    from meshlab.experiment.sources import collector_source as start_collector

    if experiment.spec.metrics.source != "prometheus":
        return start_collector(experiment, load, mirrored, run_dir, closers), None
    from meshlab.metrics.sourced import fed_by_line

    prom, bounds = _prometheus(experiment, load, closers, drain_load=False)
    live = start_collector(
        experiment,
        load,
        mirrored,
        run_dir,
        closers,
        also={"prometheus": prom},
        timings=fed_by_line(experiment.spec.analysis),
    )
    return live, bounds

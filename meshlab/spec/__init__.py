"""The experiment spec: pydantic models of every section and the loader that reports field paths.

One module per section (routing, analysis, local, load, target) so later sections slot in without
touching the others; :func:`load_experiment` is the only way in from a file.
"""

from meshlab.spec.analysis import Analysis, Limits, Metric
from meshlab.spec.control import Control
from meshlab.spec.experiment import Experiment, ExperimentSpec, Metadata
from meshlab.spec.load import Load
from meshlab.spec.loading import load_experiment, parse_experiment
from meshlab.spec.local import Local, LocalVersion
from meshlab.spec.routing import ABTest, BlueGreen, Canary, RequestMatch, Service, Shadow, Version
from meshlab.spec.target import MetricsSource, Prometheus, Target

__all__ = [
    "ABTest",
    "Analysis",
    "BlueGreen",
    "Canary",
    "Control",
    "Experiment",
    "ExperimentSpec",
    "Limits",
    "Load",
    "Local",
    "LocalVersion",
    "Metadata",
    "Metric",
    "MetricsSource",
    "Prometheus",
    "RequestMatch",
    "Service",
    "Shadow",
    "Target",
    "Version",
    "load_experiment",
    "parse_experiment",
]

"""Statistics: anytime-valid comparisons of candidate against baseline, and the verdict.

Pure numpy/scipy, no I/O. :class:`Comparison` is the incremental object a live run keeps;
:func:`decide` is the verdict rule; the modules hold one method each (``boundaries``: the
beta-binomial mixture boundary, ``latency``: quantile confidence sequences, ``rates``: error-rate,
disagreement and total-variation bounds, ``classic``: fixed-horizon Mann-Whitney/Hodges-Lehmann,
``design``: boundary design sizes from tolerances, ``replay``: every-k-rows replay in vectorised
blocks, ``simulate``: whole simulated experiments for the calibration and ``planning``, the
predictions of ``meshlab plan``).
"""

from meshlab.stats.comparison import MODES, Comparison, Mode
from meshlab.stats.latency import LogGrid
from meshlab.stats.predictions import predictions_differ
from meshlab.stats.results import Assessment, Decision, MetricResult, Verdict, decide

__all__ = [
    "MODES",
    "Assessment",
    "Comparison",
    "Decision",
    "LogGrid",
    "MetricResult",
    "Mode",
    "Verdict",
    "decide",
    "predictions_differ",
]

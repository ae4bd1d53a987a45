"""``meshlab serve``: meshlab's sequential verdicts for Argo Rollouts and Flagger.

Modules: :mod:`~meshlab.serve.config` (settings, analysis profiles), :mod:`~meshlab.serve.targets`
(which series are which arm), :mod:`~meshlab.serve.sessions` (session keys, durable state),
:mod:`~meshlab.serve.evidence` (Prometheus reads at recorded times -> comparison),
:mod:`~meshlab.serve.judge` (one look), :mod:`~meshlab.serve.argo` and
:mod:`~meshlab.serve.flagger` (each controller's request and answer), :mod:`~meshlab.serve.app`
(the HTTP edge).
"""

from meshlab.serve.config import PrometheusSettings, ServeSettings, load_profiles
from meshlab.serve.judge import Judge, LookRequest

__all__ = ["Judge", "LookRequest", "PrometheusSettings", "ServeSettings", "load_profiles"]

"""The clock alias every live component takes, defined once (below every layer, imports no meshlab).

A ``Clock`` is any zero-argument callable returning seconds (``time.time``, ``time.monotonic`` or
a test's fake clock), so the controller, the collector and the metrics sources run on fake time in
tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


def time_of_day(epoch: float) -> str:
    """``15:02:11Z``: the UTC time of day of ``epoch`` seconds, as one-line reasons name it."""
    return time.strftime("%H:%M:%SZ", time.gmtime(epoch))

"""The clock alias every live component takes, defined once (below every layer, imports nothing).

A ``Clock`` is any zero-argument callable returning seconds (``time.time``, ``time.monotonic`` or
a test's fake clock), so the controller, the collector and the metrics sources run on fake time in
tests.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]

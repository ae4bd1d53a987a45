"""Shadow prediction capture: a collector for KServe payload-logger CloudEvents, paired by request.

Istio drops the responses of mirrored requests, so the shadow's predictions are logged by KServe to
this collector, joined request+response and primary+shadow, and released as paired
:class:`meshlab.samples.Samples` rows (the shadow's with ``mirrored=True``) for the divergence
metric. :mod:`meshlab.manifests.kserve` renders what a user applies (logger configuration of both
versions, the collector's Service and policies). The collector binds loopback by default and
refuses to listen anywhere else without a bearer token; see :mod:`meshlab.collector.listener` for
its bounds and :class:`Rejections` for what it counts.
"""

from meshlab.collector.auth import Token, auth_from_spec, load_token
from meshlab.collector.counts import CollectorCounts, Rejections
from meshlab.collector.events import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    EventError,
    InferenceEvent,
    extract_prediction,
    parse,
)
from meshlab.collector.joining import ArmRecord, Joiner, JoinStats
from meshlab.collector.kserve import (
    arm_by_service,
    collector_event_url,
    logger_patches,
    logger_patches_from_spec,
    logger_spec,
)
from meshlab.collector.listener import Limits
from meshlab.collector.live import CollectorLiveSamples
from meshlab.collector.server import APPROXIMATION, Collector, collector_from_spec

__all__ = [
    "APPROXIMATION",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "ArmRecord",
    "Collector",
    "CollectorCounts",
    "CollectorLiveSamples",
    "EventError",
    "InferenceEvent",
    "JoinStats",
    "Joiner",
    "Limits",
    "Rejections",
    "Token",
    "arm_by_service",
    "auth_from_spec",
    "collector_event_url",
    "collector_from_spec",
    "extract_prediction",
    "load_token",
    "logger_patches",
    "logger_patches_from_spec",
    "logger_spec",
    "parse",
]

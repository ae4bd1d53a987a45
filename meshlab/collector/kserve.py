"""KServe logger configuration, kept importable from here; the builders live in
:mod:`meshlab.manifests.kserve` (pure manifest builders sit below the collector's layer).
"""

from meshlab.manifests.kserve import (
    METADATA_HEADERS,
    LoggerMode,
    arm_by_service,
    collector_event_url,
    logger_patches,
    logger_patches_from_spec,
    logger_spec,
)

__all__ = [
    "METADATA_HEADERS",
    "LoggerMode",
    "arm_by_service",
    "collector_event_url",
    "logger_patches",
    "logger_patches_from_spec",
    "logger_spec",
]

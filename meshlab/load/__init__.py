"""Inference load with Locust, recording every request (Locust itself runs in child processes).

Never import :mod:`meshlab.load.locust_user` from meshlab's own process: it imports locust, which
monkey-patches the process with gevent. Everything exported here is safe to import, and is
imported on first use: ``meshlab validate`` reads payloads through :mod:`meshlab.load.inputs`
without paying for numpy, which the samples and their ordering need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshlab.load.config import LocustConfig, config_from_env
    from meshlab.load.ordering import OrderedMerge, SampleBatch
    from meshlab.load.plan import LoadPlan, LoadResult
    from meshlab.load.recording import plan_from_spec, record_load, samples_from_spool
    from meshlab.load.runner import LoadRun

_WHERE = {
    "LocustConfig": "config",
    "config_from_env": "config",
    "OrderedMerge": "ordering",
    "SampleBatch": "ordering",
    "LoadPlan": "plan",
    "LoadResult": "plan",
    "plan_from_spec": "recording",
    "record_load": "recording",
    "samples_from_spool": "recording",
    "LoadRun": "runner",
}

__all__ = [
    "LoadPlan",
    "LoadResult",
    "LoadRun",
    "LocustConfig",
    "OrderedMerge",
    "SampleBatch",
    "config_from_env",
    "plan_from_spec",
    "record_load",
    "samples_from_spool",
]


def __getattr__(name: str) -> Any:
    """The exported names, imported from their module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"meshlab.load.{module}"), name)

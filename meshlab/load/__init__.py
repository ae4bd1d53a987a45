"""Inference load with Locust, recording every request (Locust itself runs in child processes).

Never import :mod:`meshlab.load.locust_user` from meshlab's own process: it imports locust, which
monkey-patches the process with gevent. Everything exported here is safe to import.
"""

from meshlab.load.config import LocustConfig, config_from_env
from meshlab.load.ordering import OrderedMerge, SampleBatch
from meshlab.load.plan import LoadPlan, LoadResult
from meshlab.load.recording import plan_from_spec, record_load, samples_from_spool
from meshlab.load.runner import LoadRun

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

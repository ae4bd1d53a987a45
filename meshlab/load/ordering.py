"""The ordered merge of sample streams, where the load package has always exported it.

It lives in :mod:`meshlab.ordering`, below every layer, since the collector and the metrics
sources merge by watermark too; this module keeps ``meshlab.load.ordering`` imports working.
"""

from __future__ import annotations

from meshlab.ordering import OrderedMerge, SampleBatch

__all__ = ["OrderedMerge", "SampleBatch"]

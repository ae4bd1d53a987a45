"""Generic JSON: each dataset row (or MESHLAB_TEMPLATE rendered with it) POSTed to MESHLAB_PATH.

The protocol is pinned by this file; everything else is configured as for inference.py.
"""

from meshlab.load.locust_user import setup


class InferenceJSON(setup("json")):  # type: ignore[misc]
    abstract = False

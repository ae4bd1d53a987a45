"""KServe V1: POST /v1/models/{model}:predict, prediction at predictions[0].

The protocol is pinned by this file; everything else is configured as for inference.py.
"""

from meshlab.load.locust_user import setup


class InferenceV1(setup("v1")):  # type: ignore[misc]
    abstract = False

"""Open Inference Protocol (V2): POST /v2/models/{model}/infer, prediction at outputs[0].data[0].

The protocol is pinned by this file; everything else is configured as for inference.py.
"""

from meshlab.load.locust_user import setup


class InferenceV2(setup("v2")):  # type: ignore[misc]
    abstract = False

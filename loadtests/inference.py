"""Inference load for meshlab: POST dataset rows to a model server, recording every request.

Configured through the environment (see meshlab/load/config.py), so the same file runs under
``meshlab load`` and by hand with Locust's UI::

    MESHLAB_EXPERIMENT=examples/fraud-v2.yaml \\
        locust -f loadtests/inference.py --host http://127.0.0.1:PORT
    MESHLAB_PROTOCOL=v1 MESHLAB_MODEL=fraud \\
        MESHLAB_PAYLOADS=loadtests/data/meshlab-features.jsonl MESHLAB_RPS=50 \\
        MESHLAB_SAMPLES=run/raw-samples.csv locust -f loadtests/inference.py --host ...

The protocol comes from the config (``v2`` by default); v2.py, v1.py and json_template.py pin it.
Add ``loadtests/shape_steps.py`` or ``loadtests/shape_ramp.py`` to ``-f`` for a load shape.
"""

from meshlab.load.locust_user import setup


class Inference(setup()):  # type: ignore[misc]
    abstract = False

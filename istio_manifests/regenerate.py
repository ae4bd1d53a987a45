"""Regenerate the golden manifests in istio_manifests/examples/ from the *.experiment.yaml beside them.

Run ``python istio_manifests/regenerate.py``. ``examples/*.experiment.yaml`` render Istio objects into
``examples/<name>/``; ``examples/gateway-api/*.experiment.yaml`` (``target.routing: gateway-api``)
render Gateway API objects into ``examples/gateway-api/<name>/``. tests/test_manifests.py and
tests/test_gateway_manifests.py fail when the committed files drift from what the builders produce.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from meshlab.cli import main

EXAMPLES = Path(__file__).resolve().parent / "examples"
FOLDERS = (EXAMPLES, EXAMPLES / "gateway-api")


def regenerate() -> int:
    for folder in FOLDERS:
        for spec in sorted(folder.glob("*.experiment.yaml")):
            out = folder / spec.name.removesuffix(".experiment.yaml")
            shutil.rmtree(out, ignore_errors=True)
            code = main(["render", "-f", str(spec), "--all", "-o", str(out)])
            if code:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(regenerate())

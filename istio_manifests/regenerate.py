"""Regenerate the golden manifests in istio_manifests/examples/ from the *.experiment.yaml beside them.

Run ``python istio_manifests/regenerate.py``; tests/test_golden.py fails when the committed files
drift from what the builders produce.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from meshlab.cli import main

EXAMPLES = Path(__file__).resolve().parent / "examples"


def regenerate() -> int:
    for spec in sorted(EXAMPLES.glob("*.experiment.yaml")):
        out = EXAMPLES / spec.name.removesuffix(".experiment.yaml")
        shutil.rmtree(out, ignore_errors=True)
        code = main(["render", "-f", str(spec), "--all", "-o", str(out)])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(regenerate())

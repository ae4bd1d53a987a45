"""Write the request dataset of the sample models: one inference request per line (JSONL).

``loadtests/data/breast_cancer.v2.jsonl``: one Open Inference Protocol V2 request body per line,
``{"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": [...]}]}``;
``loadtests/data/breast_cancer.v1.jsonl``: the same rows as KServe V1 bodies, ``{"instances":
[[...]]}``. Rows are every sample of scikit-learn's breast-cancer dataset, in dataset order.

Run from the repository root: ``python examples/models/make_dataset.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer

OUT = Path(__file__).resolve().parents[2] / "loadtests" / "data"


def main() -> int:
    features, _ = load_breast_cancer(return_X_y=True)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [[float(v) for v in row] for row in features]
    with (OUT / "breast_cancer.v2.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            body = {
                "inputs": [
                    {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}
                ]
            }
            fh.write(json.dumps(body, separators=(",", ":")) + "\n")
    with (OUT / "breast_cancer.v1.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"instances": [row]}, separators=(",", ":")) + "\n")
    print(f"wrote {len(rows)} requests to {OUT}/breast_cancer.v{{1,2}}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())

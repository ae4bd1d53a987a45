"""Train the MLServer example models on scikit-learn's breast-cancer dataset (shipped, no download).

Writes ``models/<variant>/model.joblib`` beside each variant's ``model-settings.json``:

* ``v1``: the live model (standardize + logistic regression);
* ``v2``: a good candidate (same features, weaker regularization; agrees with v1 on ~99% of rows);
* ``shuffled``: a broken candidate trained on shuffled labels (its predictions are noise);
* ``wrong-name``: the good candidate, but served under another model name (MLServer answers 404
  to ``/v2/models/breast-cancer/infer``), a mistake pre-flight catches.

Run with the Python of the MLServer virtualenv (it has scikit-learn and joblib)::

    .venv-mlserver/bin/python examples/mlserver/train.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def train(c: float, shuffle: bool = False, seed: int = 0) -> Pipeline:
    features, labels = load_breast_cancer(return_X_y=True)
    if shuffle:
        labels = np.random.default_rng(seed).permutation(labels)
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)).fit(
        features, labels
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=HERE / "models")
    args = parser.parse_args()
    models = {
        "v1": train(c=1.0),
        "v2": train(c=0.5),
        "shuffled": train(c=1.0, shuffle=True),
    }
    models["wrong-name"] = models["v2"]
    features, _ = load_breast_cancer(return_X_y=True)
    for variant, model in models.items():
        folder = args.out / variant
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, folder / "model.joblib")
        agree = float(np.mean(model.predict(features) == models["v1"].predict(features)))
        print(f"{folder / 'model.joblib'}: agrees with v1 on {100 * agree:.1f}% of the rows")


if __name__ == "__main__":
    main()

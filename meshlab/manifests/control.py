"""A ``Deployment`` for the control arm (issue 13), derived from the baseline's: pure, no I/O.

``meshlab render`` routes the control subset; the pods behind it are the user's to create. This
builder takes the baseline's Deployment as Kubernetes returns it (``kubectl get deployment v1 -o
yaml``, parsed) and returns one a user can ``kubectl apply``: the same pod template (image,
command, resources, probes, volumes), so the control is the baseline's model at the candidate's
share and age; its subset labels (``spec.control.labels`` or the derived ``version: v1-control``)
in place of the baseline's, so the baseline's DestinationRule subset does not select the control's
pods; and one label more, ``meshlab.io/arm: control``, on the pods and in the selector, so the
two Deployments' selectors never overlap. Server-set fields (``status``, ``uid``,
``resourceVersion``, ``managedFields``, revision annotations) are dropped. ``replicas`` should be
the candidate's: Kayenta's "fresh baseline of the same size" as the canary.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from meshlab.errors import ConfigError
from meshlab.manifests.meta import Manifest
from meshlab.spec import Experiment

ARM_LABEL = "meshlab.io/arm"
SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")
SERVER_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",
)


def control_deployment(
    baseline: Mapping[str, Any], experiment: Experiment, replicas: int | None = None
) -> Manifest:
    """The control's Deployment from the baseline's (see the module docstring)."""
    control = experiment.spec.control_version
    if control is None:
        raise ConfigError("spec.control: not set; add 'control: {}' to derive a control arm")
    if baseline.get("kind") != "Deployment" or not str(baseline.get("apiVersion", "")).startswith(
        "apps/"
    ):
        raise ConfigError(
            "baseline: expected an apps/v1 Deployment (kubectl get deployment -o yaml)"
        )
    spec = baseline.get("spec") or {}
    template = spec.get("template") or {}
    pod_labels = dict((template.get("metadata") or {}).get("labels") or {})
    subset = experiment.spec.baseline.labels
    if not subset.items() <= pod_labels.items():
        missing = ", ".join(f"{k}={v}" for k, v in subset.items() if pod_labels.get(k) != v)
        raise ConfigError(
            f"baseline: its pod template lacks the baseline subset labels {missing}; "
            "pass the Deployment that spec.baseline.labels selects"
        )
    if replicas is not None and replicas < 1:
        raise ConfigError(f"replicas: {replicas} is below 1; give the candidate's replica count")
    extra = {**control.labels, ARM_LABEL: "control"}
    out: Manifest = copy.deepcopy(dict(baseline))
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in SERVER_SET:
        meta.pop(key, None)
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in SERVER_ANNOTATIONS
    }
    meta["annotations"] = {**annotations, "meshlab.io/derived-from": str(meta.get("name", ""))}
    meta["name"] = f"{meta.get('name', 'baseline')}-control"
    meta["namespace"] = experiment.metadata.namespace
    meta["labels"] = {**(meta.get("labels") or {}), **extra}
    new_spec = out.setdefault("spec", {})
    if replicas is not None:
        new_spec["replicas"] = replicas
    selector = dict((new_spec.get("selector") or {}).get("matchLabels") or {})
    for key in subset:  # the baseline's subset keys take the control's values, or go
        if key in selector:
            if key in control.labels:
                selector[key] = control.labels[key]
            else:
                del selector[key]
    new_spec["selector"] = {
        **(new_spec.get("selector") or {}),
        "matchLabels": {**selector, ARM_LABEL: "control"},
    }
    pod_meta = new_spec["template"].setdefault("metadata", {})
    kept = {k: v for k, v in pod_labels.items() if k not in subset}
    pod_meta["labels"] = {**kept, **extra}
    pod_meta.pop("creationTimestamp", None)
    return out

"""The ``control`` section (issue 13): an equal-load, equally fresh copy of the baseline.

Against production the candidate is compared with unlike things: production carries the rest of
the load and is warm, the candidate carries ``w``% and is cold. A control arm is a second,
freshly started instance of the baseline that receives the candidate's share (canary: production
``100 - 2w``%, control ``w``%, candidate ``w``%; shadow: both mirrored at the same percentage), so
latency, errors and divergence compare the candidate with the control: same share, same age
(:mod:`meshlab.stats.comparison`, :mod:`meshlab.manifests.routing`). Above 50% the control gets
what production would have left (``100 - w``%), so shares are unequal there; steps above 50% are
ramp steps, not comparisons, and the README says so.

On a cluster the control is a DestinationRule subset (``subset``, default ``control``) selecting
pods by ``labels``. Those labels must not include every baseline label: the baseline's subset
would then select the control's pods too. When not given they are derived from the baseline's:
each value suffixed ``-control`` (``version: v1`` -> ``version: v1-control``);
:func:`meshlab.manifests.control.control_deployment` builds the matching ``Deployment`` from the
baseline's. On the local mesh the control is a second instance of the baseline started from
``spec.local.baseline.command``, or an already running server at ``url``.
"""

from __future__ import annotations

from pydantic import Field

from meshlab.spec.base import DnsLabel, LocalUrl, StrictModel
from meshlab.spec.routing import Version

SUFFIX = "-control"
MAX_LABEL_VALUE = 63  # Kubernetes label values


class Control(StrictModel):
    """``spec.control``: subset and pod labels on a cluster; on the local mesh an optional ``url``."""

    subset: DnsLabel = "control"
    labels: dict[str, str] | None = Field(default=None, min_length=1)
    url: LocalUrl | None = None

    def version(self, baseline: Version) -> Version:
        """The control as a routed version: its subset and its (given or derived) pod labels."""
        return Version(subset=self.subset, labels=self.labels or derived_labels(baseline))


def derived_labels(baseline: Version) -> dict[str, str]:
    """The baseline's labels with each value suffixed ``-control``."""
    return {k: f"{v}{SUFFIX}" for k, v in baseline.labels.items()}


def control_errors(control: Control, baseline: Version, candidate: Version) -> tuple[str, str]:
    """``("", "")`` when coherent with the versions, else (subpath, one-line message)."""
    if control.subset in (baseline.subset, candidate.subset):
        which = "baseline" if control.subset == baseline.subset else "candidate"
        return ".subset", f"'{control.subset}' is the {which}'s subset; give the control its own"
    if control.labels is None:
        long = [k for k, v in baseline.labels.items() if len(v) + len(SUFFIX) > MAX_LABEL_VALUE]
        if long:
            return ".labels", (
                f"baseline label {long[0]} is too long to suffix '{SUFFIX}' (63 characters at "
                "most); give control.labels"
            )
        return "", ""
    labels = control.labels
    if baseline.labels.items() <= labels.items():
        return ".labels", (
            "these include every baseline label, so the baseline's subset would also select the "
            "control's pods; change one of them (e.g. version: v1-control)"
        )
    if candidate.labels.items() <= labels.items():
        return ".labels", (
            "these include every candidate label, so the candidate's subset would also select the "
            "control's pods; change one of them"
        )
    return "", ""

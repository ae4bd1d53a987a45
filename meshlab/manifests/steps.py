"""The steps of an experiment: what traffic each arm gets at each stage of a strategy.

A :class:`Step` is routing intent, independent of Istio: the candidate's share of primary traffic,
the share mirrored to it, and the request matches that go to it. :func:`plan` lists a strategy's
steps in order; ``promoted`` and ``rollback`` are the two end states every strategy shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meshlab.errors import ConfigError
from meshlab.spec import Experiment, RequestMatch
from meshlab.spec.routing import StringMatch

StepKind = Literal["canary", "shadow", "preview", "switch", "abtest", "promoted", "rollback"]
END_STATES = ("promoted", "rollback")


@dataclass(frozen=True)
class Step:
    """One routing state. ``number`` is 1-based within the plan, 0 for the end states."""

    number: int
    kind: StepKind
    candidate_weight: int  # percent of unmatched primary traffic served by the candidate
    mirror_percent: float = 0.0  # percent of primary requests copied to the candidate
    matches: tuple[RequestMatch, ...] = ()  # requests matching any of these go to the candidate

    @property
    def name(self) -> str:
        """``"1"``, ``"2"``, ... for plan steps; ``"promoted"`` or ``"rollback"`` for end states."""
        return self.kind if self.kind in END_STATES else str(self.number)

    @property
    def label(self) -> str:
        """A short human description, e.g. ``canary 25%`` or ``shadow (mirror 100%)``."""
        if self.kind == "canary":
            return f"canary {self.candidate_weight}%"
        if self.kind == "shadow":
            return f"shadow (mirror {self.mirror_percent:g}%)"
        if self.kind == "preview":
            return "blue/green preview (header)"
        if self.kind == "switch":
            return "blue/green switch"
        if self.kind == "abtest":
            return "A/B test (matched requests)"
        return self.kind


def plan(experiment: Experiment) -> list[Step]:
    """The strategy's steps in order, without the end states."""
    spec = experiment.spec
    steps: list[Step] = []
    if spec.strategy == "shadow":
        steps.append(Step(1, "shadow", 0, mirror_percent=spec.shadow_block.mirror_percent))
        if spec.then == "canary" and spec.canary is not None:
            steps += [Step(i + 2, "canary", w) for i, w in enumerate(spec.canary.steps)]
    elif spec.strategy == "canary":
        assert spec.canary is not None  # guaranteed by ExperimentSpec validation
        first = spec.canary.first_step  # 1 unless a resumed run starts later in the plan
        steps += [Step(first + i, "canary", w) for i, w in enumerate(spec.canary.steps)]
    elif spec.strategy == "bluegreen":
        header = spec.bluegreen_block.preview_header
        preview = RequestMatch(headers={header.name: StringMatch(exact=header.value)})
        steps.append(Step(1, "preview", 0, matches=(preview,)))
        steps.append(Step(2, "switch", 100))
    else:
        assert spec.abtest is not None  # guaranteed by ExperimentSpec validation
        steps.append(Step(1, "abtest", 0, matches=tuple(spec.abtest.match)))
    return steps


def first_split(experiment: Experiment) -> float | None:
    """The candidate's weight (0-1) in the first weighted canary step, or None if there is none.

    The statistics tune each arm's bound to this split before any data (blue/green and A/B
    steps split by header, in shares not known in advance: None).
    """
    for step in plan(experiment):
        if step.kind == "canary" and 0 < step.candidate_weight < 100 and not step.matches:
            return step.candidate_weight / 100
    return None


def steady_split(experiment: Experiment) -> bool:
    """Whether every weighted canary step gives the candidate the same weight: the statistics
    group error-rate requests by that split (:mod:`meshlab.stats.arrival`) only when it holds
    for the whole run."""
    weights = {
        step.candidate_weight
        for step in plan(experiment)
        if step.kind == "canary" and 0 < step.candidate_weight < 100 and not step.matches
    }
    return len(weights) <= 1


def promoted() -> Step:
    """All traffic on the candidate."""
    return Step(0, "promoted", 100)


def rollback() -> Step:
    """All traffic on the baseline: no mirror, no route to the candidate."""
    return Step(0, "rollback", 0)


def step_by_name(experiment: Experiment, name: str) -> Step:
    """Resolve ``--step``: a 1-based number, ``promoted`` or ``rollback``."""
    if name == "promoted":
        return promoted()
    if name == "rollback":
        return rollback()
    steps = plan(experiment)
    try:
        number = int(name)
    except ValueError:
        raise ConfigError(
            f"--step: {name!r} is not a step; use 1..{len(steps)}, 'promoted' or 'rollback'"
        ) from None
    if not 1 <= number <= len(steps):
        raise ConfigError(
            f"--step: {number} is out of range; strategy {experiment.spec.strategy} has steps "
            f"1..{len(steps)} (or use 'promoted' / 'rollback')"
        )
    return steps[number - 1]


def all_steps(experiment: Experiment) -> list[Step]:
    """Every state ``render --all`` writes: the plan, then promoted, then rollback."""
    return [*plan(experiment), promoted(), rollback()]

"""The ``load`` section: the inference traffic Locust sends during the experiment.

``rps`` is the target request rate (constant throughput, spread over ``users``); ``steps`` or
``ramp`` replace the constant rate with a load shape. ``extractor`` is a path into the response
JSON (``outputs[0].data[0]``, ``predictions[0]``) whose value is recorded as the prediction;
:func:`parse_extractor` is the one parser of that syntax, so the spec and the load generator agree.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import Duration, StrictModel

Protocol = Literal["v2", "v1", "json"]
_STEP = re.compile(r"(?P<dot>\.)?(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|\[(?P<index>\d+)\]")
_DEFAULT_EXTRACTORS = {"v2": "outputs[0].data[0]", "v1": "predictions[0]", "json": ""}


def parse_extractor(text: str) -> tuple[str | int, ...]:
    """``"outputs[0].data[0]"`` -> ``("outputs", 0, "data", 0)``; ``""`` -> ``()`` (whole body).

    Raises ``ValueError`` naming the offending position when the path does not parse.
    """
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _STEP.match(text, pos)
        # A key needs a '.' before it, except the first one; an index never has one.
        if match is None or (match["name"] and (match["dot"] is None) != (pos == 0)):
            raise ValueError(
                f"'{text}' is not a path like outputs[0].data[0] (stuck at character {pos + 1})"
            )
        parts.append(match["name"] if match["name"] else int(match["index"]))
        pos = match.end()
    return tuple(parts)


def default_path(protocol: str, model: str) -> str:
    """The URL path a protocol POSTs to (``/`` for generic JSON, which should name its own)."""
    if protocol == "v2":
        return f"/v2/models/{model}/infer"
    if protocol == "v1":
        return f"/v1/models/{model}:predict"
    return "/"


def default_extractor(protocol: str) -> str:
    """Where a protocol's response carries the prediction ("" = the whole body)."""
    return _DEFAULT_EXTRACTORS.get(protocol, "")


class Step(StrictModel):
    """One stage of a stepped load: hold ``rps`` for ``duration``."""

    rps: float = Field(gt=0)
    duration: Duration


class Ramp(StrictModel):
    """A linear ramp of the request rate from ``from_rps`` to ``to_rps`` over ``duration``."""

    from_rps: float = Field(default=0.0, ge=0)
    to_rps: float = Field(gt=0)
    duration: Duration
    step_every: Duration = 1.0


class Variant(StrictModel):
    """A share of requests that carries extra headers (e.g. a blue/green preview, an A/B group)."""

    share: float = Field(gt=0, le=1)
    headers: dict[str, str] = Field(min_length=1)


class Load(StrictModel):
    """Protocol, payloads and rate of the generated load."""

    protocol: Protocol = "v2"
    model: str = Field(default="model", min_length=1)
    payloads: str | None = None
    template: str | None = None
    input_name: str = Field(default="input-0", min_length=1)
    extractor: str | None = None
    path: str | None = None
    rps: float = Field(default=50.0, gt=0)
    duration: Duration = 60.0
    users: int = Field(default=20, ge=1)
    workers: int = Field(default=0, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # A share of requests with extra headers. Default for bluegreen/abtest: half the requests
    # carry the preview header / the A/B match headers (see meshlab.experiment.run).
    variants: list[Variant] | None = None
    timeout: Duration = 10.0
    steps: list[Step] | None = Field(default=None, min_length=1)
    ramp: Ramp | None = None

    @field_validator("extractor")
    @classmethod
    def _extractor_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_extractor(value)
            except ValueError as exc:
                raise PydanticCustomError("load", "{why}", {"why": str(exc)}) from None
        return value

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise PydanticCustomError(
                "load", "'{v}' must start with '/' (e.g. /v2/models/fraud/infer)", {"v": value}
            )
        return value

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in ("x-request-id", "x-meshlab-arm"):
                raise PydanticCustomError(
                    "load",
                    "header '{n}' is set by meshlab itself; remove it",
                    {"n": name, "subpath": f".{name}"},
                )
        return value

    @field_validator("variants")
    @classmethod
    def _shares_fit(cls, value: list[Variant] | None) -> list[Variant] | None:
        if value is not None and sum(v.share for v in value) > 1 + 1e-9:
            raise PydanticCustomError(
                "load",
                "the variants' shares add up to {total:.3g}, above 1",
                {"total": sum(v.share for v in value)},
            )
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Load:
        if self.steps is not None and self.ramp is not None:
            raise PydanticCustomError(
                "load", "give either 'steps' or 'ramp', not both", {"subpath": ".ramp"}
            )
        if self.protocol == "json" and self.path is None:
            raise PydanticCustomError(
                "load",
                "protocol json needs 'path' (the URL path to POST to), e.g. path: /predict",
                {"subpath": ".path"},
            )
        return self

    @property
    def request_path(self) -> str:
        """The URL path requests go to (the protocol's default unless ``path`` is given)."""
        return self.path if self.path is not None else default_path(self.protocol, self.model)

    @property
    def extractor_path(self) -> str:
        """The extractor in force: the given one or the protocol's default."""
        return self.extractor if self.extractor is not None else default_extractor(self.protocol)

    @property
    def peak_rps(self) -> float:
        """The highest rate the load reaches (sets the per-user rate under a shape)."""
        if self.steps:
            return max(s.rps for s in self.steps)
        if self.ramp is not None:
            return max(self.ramp.from_rps, self.ramp.to_rps)
        return self.rps

    @property
    def total_duration(self) -> float:
        """Seconds the load runs: the shape's length when a shape is given, else ``duration``."""
        if self.steps:
            return sum(s.duration for s in self.steps)
        if self.ramp is not None:
            return self.ramp.duration
        return self.duration

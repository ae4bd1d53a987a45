"""Routing sections of the spec: the service under test, its two versions and each strategy's block."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import DnsLabel, Duration, Host, StrictModel

Strategy = Literal["canary", "shadow", "bluegreen", "abtest"]
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


def _header_name(value: str) -> str:
    if value != value.lower():
        raise PydanticCustomError(
            "header_name",
            "header name '{value}' must be lowercase (write '{lower}')",
            {"value": value, "lower": value.lower()},
        )
    if not _HEADER_NAME.match(value):
        raise PydanticCustomError(
            "header_name", "'{value}' is not a valid HTTP header name", {"value": value}
        )
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]


class Retries(StrictModel):
    """Retry policy applied to meshlab's route (Istio HTTPRetry)."""

    attempts: int = Field(ge=0, le=10)
    per_try_timeout: Duration | None = None
    retry_on: str | None = None


class Service(StrictModel):
    """The Kubernetes Service in front of both model versions."""

    host: Host
    port: int = Field(ge=1, le=65535)
    gateways: list[str] | None = None
    timeout: Duration | None = None
    retries: Retries | None = None


class Version(StrictModel):
    """One model version: the DestinationRule subset and the pod labels that select it."""

    subset: DnsLabel
    labels: dict[str, str] = Field(min_length=1)


class StringMatch(StrictModel):
    """Istio StringMatch: exactly one of exact, prefix, regex."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "string_match",
                "give exactly one of exact, prefix, regex (got {n})",
                {"n": len(given)},
            )
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise PydanticCustomError(
                    "string_match",
                    "regex '{r}' does not compile: {e}",
                    {"r": self.regex, "e": str(exc)},
                ) from None
        return self

    def as_istio(self) -> dict[str, str]:
        return {k: v for k in ("exact", "prefix", "regex") if (v := getattr(self, k)) is not None}


class RequestMatch(StrictModel):
    """Istio HTTPMatchRequest subset: headers and uri (all given conditions must hold)."""

    headers: dict[HeaderName, StringMatch] | None = None
    uri: StringMatch | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> RequestMatch:
        if not self.headers and self.uri is None:
            raise PydanticCustomError("match", "a match needs 'headers' or 'uri'", {})
        return self

    def as_istio(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.headers:
            out["headers"] = {name: m.as_istio() for name, m in self.headers.items()}
        if self.uri is not None:
            out["uri"] = self.uri.as_istio()
        return out


class Canary(StrictModel):
    """Stepped traffic weights: the candidate's percent of live traffic at each step."""

    steps: list[int] = Field(min_length=1)
    _first: int = PrivateAttr(default=1)  # not from YAML: set only by resumed_at()

    @property
    def first_step(self) -> int:
        """The number of ``steps[0]``: 1, or the step a resumed run carries on from."""
        return self._first

    def resumed_at(self, number: int) -> Canary:
        """The steps from step ``number`` on, keeping their numbers (a run resumed after a crash).

        Renumbering them from 1 would name the resumed run's steps after the wrong weights in its
        report, and a second crash would resume at the original step 1.
        """
        out = self.model_copy(update={"steps": self.steps[number - self._first :]})
        out._first = number
        return out

    @field_validator("steps", mode="before")
    @classmethod
    def _integers(cls, value: object) -> object:
        # Checked here rather than with Field(ge/le) so the message names the index and the value.
        if isinstance(value, list):
            for i, w in enumerate(value):
                sub = f"[{i}]"
                if isinstance(w, bool) or not isinstance(w, int):
                    raise PydanticCustomError(
                        "weight",
                        "{w} is not an integer percent 0..100",
                        {"w": repr(w), "subpath": sub},
                    )
                if w < 0:
                    raise PydanticCustomError("weight", "{w} is below 0", {"w": w, "subpath": sub})
                if w > 100:
                    raise PydanticCustomError(
                        "weight", "{w} is above 100", {"w": w, "subpath": sub}
                    )
                if i and w < value[i - 1]:
                    raise PydanticCustomError(
                        "weight",
                        "{w} is below the previous step ({p}); candidate weights must not decrease",
                        {"w": w, "p": value[i - 1], "subpath": sub},
                    )
        return value


class Shadow(StrictModel):
    """Mirror a share of live requests to the candidate; its responses are discarded."""

    mirror_percent: float = Field(default=100.0, ge=0, le=100)


class PreviewHeader(StrictModel):
    """The header that sends a request to the candidate during a blue/green preview."""

    name: HeaderName = "x-meshlab-preview"
    value: str = "true"


class BlueGreen(StrictModel):
    """Preview the candidate behind a header, then switch all traffic at once."""

    preview_header: PreviewHeader = PreviewHeader()


class ABTest(StrictModel):
    """Requests matching any of ``match`` go to the candidate, all others to the baseline."""

    match: list[RequestMatch] = Field(min_length=1)

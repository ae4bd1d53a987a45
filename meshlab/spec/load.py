"""The ``load`` section: the inference traffic Locust sends during the experiment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from meshlab.spec.base import Duration, StrictModel

Protocol = Literal["v2", "v1", "json"]


class Load(StrictModel):
    """Protocol, payloads and rate of the generated load."""

    protocol: Protocol = "v2"
    model: str = "model"
    payloads: str | None = None
    extractor: str | None = None
    path: str | None = None
    rps: float = Field(default=50.0, gt=0)
    duration: Duration = 60.0
    users: int = Field(default=20, ge=1)
    workers: int = Field(default=0, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0

"""The ``local`` section: how the embedded local mesh reaches each model version.

Per version, either a ``command`` meshlab starts (with a ``readyUrl`` it polls) or the ``url`` of a
server that already runs.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import Duration, StrictModel


class LocalVersion(StrictModel):
    """A model server for one version: started by meshlab, or already running at ``url``."""

    command: list[str] | None = None
    ready_url: str | None = None
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _command_or_url(self) -> LocalVersion:
        if (self.command is None) == (self.url is None):
            raise PydanticCustomError(
                "local", "give either 'command' (meshlab starts it) or 'url' (already running)", {}
            )
        if self.command is not None and not self.ready_url:
            raise PydanticCustomError(
                "local", "a 'command' needs a 'readyUrl' meshlab can poll", {"subpath": ".readyUrl"}
            )
        return self


class Local(StrictModel):
    """The local mesh: Envoy in front of local model servers."""

    baseline: LocalVersion
    candidate: LocalVersion
    listen_port: int = Field(default=0, ge=0, le=65535)
    admin_port: int = Field(default=0, ge=0, le=65535)
    startup_timeout: Duration = 60.0

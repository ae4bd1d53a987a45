"""The ``local`` section: how the embedded local mesh reaches each model version.

Per version, either a ``command`` meshlab starts (with a ``readyUrl`` it polls) or the ``url`` of a
server that already runs. In ``command``, ``readyUrl`` and ``env`` values meshlab substitutes:

* ``{port}``: a free loopback port meshlab picked for this version's server;
* ``{python}``: the Python interpreter running meshlab (so a venv's packages are there);
* ``{here}``: the directory of the experiment file (the current directory if unknown).

Example::

    local:
      baseline:
        command: ["{python}", "{here}/models/serve.py", "--version", "baseline", "--port", "{port}"]
        readyUrl: "http://127.0.0.1:{port}/v2/health/ready"
      candidate:
        url: http://127.0.0.1:9001
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import Duration, StrictModel

PLACEHOLDERS = ("{port}", "{python}", "{here}")


class LocalVersion(StrictModel):
    """A model server for one version: started by meshlab, or already running at ``url``."""

    command: list[str] | None = Field(default=None, min_length=1)
    ready_url: str | None = None
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme != "http" or not parts.hostname or parts.port is None:
                raise PydanticCustomError(
                    "local",
                    "'{v}' must be an http URL with a port, e.g. http://127.0.0.1:9000",
                    {"v": value},
                )
        return value

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
        if self.url is not None and self.ready_url is not None:
            raise PydanticCustomError(
                "local",
                "'readyUrl' goes with 'command'; with 'url' meshlab polls nothing",
                {"subpath": ".readyUrl"},
            )
        return self


class Local(StrictModel):
    """The local mesh: Envoy in front of local model servers (all on 127.0.0.1)."""

    baseline: LocalVersion
    candidate: LocalVersion
    listen_port: int = Field(default=0, ge=0, le=65535)  # 0: Envoy picks a free port
    admin_port: int = Field(default=0, ge=0, le=65535)  # the outbound Envoy's admin port
    startup_timeout: Duration = 60.0
    stop_timeout: Duration = 5.0  # SIGTERM -> SIGKILL grace per process group
    envoy_concurrency: int = Field(default=1, ge=1, le=16)  # worker threads of the outbound Envoy
    envoy_log_level: Literal["trace", "debug", "info", "warning", "error", "critical", "off"] = (
        "warning"
    )
    capture_mirrored: bool = True  # tap the candidate's mirrored responses for pairing

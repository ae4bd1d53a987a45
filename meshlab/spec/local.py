"""The ``local`` section: how the embedded local mesh reaches each model version.

Per version, either a ``command`` meshlab starts (with a ``readyUrl`` it polls) or the ``url`` of a
server that already runs. In ``command``, ``readyUrl`` and ``env`` values meshlab substitutes:

* ``{port}``: a free loopback port meshlab picked for this version's server (the HTTP port the
  mesh sends inference to);
* ``{port:NAME}``: another free port for the same server, one per distinct ``NAME`` (``{port:grpc}``,
  ``{port:metrics}``): servers like MLServer listen on several ports and must be told each;
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

import re
from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import Duration, LocalUrl, StrictModel

PLACEHOLDERS = ("{port}", "{port:NAME}", "{python}", "{here}")
_PLACEHOLDER = re.compile(r"\{(?P<word>[a-z]+)(?::(?P<name>[^{}]*))?\}")
_PORT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def port_names(texts: list[str]) -> tuple[str, ...]:
    """The port placeholders used: ``""`` for ``{port}`` (always first) and each ``{port:NAME}``."""
    names = {""}
    for text in texts:
        for match in _PLACEHOLDER.finditer(text):
            if match["word"] == "port" and match["name"]:
                names.add(match["name"])
    return tuple(sorted(names))


def substitute(text: str, ports: dict[str, int], python: str, here: str) -> str:
    """``text`` with every placeholder replaced (``ports`` keyed by :func:`port_names`)."""

    def one(match: re.Match[str]) -> str:
        word, name = match["word"], match["name"]
        if word == "port":
            return str(ports[name or ""])
        if word == "python" and name is None:
            return python
        if word == "here" and name is None:
            return here
        return match[0]

    return _PLACEHOLDER.sub(one, text)


def _check_placeholders(text: str, where: str) -> None:
    for match in _PLACEHOLDER.finditer(text):
        word, name = match["word"], match["name"]
        if word == "port" and name is not None and not _PORT_NAME.match(name):
            raise PydanticCustomError(
                "local",
                "'{p}': a port name is lowercase letters, digits and '-', e.g. {e}",
                {"p": match[0], "e": "{port:grpc}", "subpath": where},
            )
        if word not in ("port", "python", "here") or (word != "port" and name is not None):
            raise PydanticCustomError(
                "local",
                "unknown placeholder '{p}'; use {known}",
                {
                    "p": match[0],
                    "known": "{port}, {port:NAME}, {python} or {here}",
                    "subpath": where,
                },
            )


class LocalVersion(StrictModel):
    """A model server for one version: started by meshlab, or already running at ``url``."""

    command: list[str] | None = Field(default=None, min_length=1)
    ready_url: str | None = None
    url: LocalUrl | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @property
    def templated(self) -> list[str]:
        """Every string meshlab substitutes placeholders in."""
        return [*(self.command or []), self.ready_url or "", *self.env.values()]

    @property
    def port_names(self) -> tuple[str, ...]:
        """``""`` (``{port}``) and every ``{port:NAME}`` this version uses."""
        return port_names(self.templated)

    @model_validator(mode="after")
    def _placeholders_known(self) -> LocalVersion:
        for i, arg in enumerate(self.command or []):
            _check_placeholders(arg, f".command[{i}]")
        _check_placeholders(self.ready_url or "", ".readyUrl")
        for key, value in self.env.items():
            _check_placeholders(value, f".env.{key}")
        return self

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

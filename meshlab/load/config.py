"""What the locustfiles need to know, passed from meshlab (or a user) through the environment.

meshlab writes a :class:`LocustConfig` as JSON and points ``MESHLAB_LOAD_CONFIG`` at it. By hand,
``MESHLAB_EXPERIMENT=experiment.yaml`` takes the ``load`` section of an experiment file, and single
variables override fields (``MESHLAB_RPS=50``, ``MESHLAB_PAYLOADS=data.jsonl``, ...; see
:data:`ENV_FIELDS`). ``MESHLAB_SAMPLES`` names the spool file the locustfile records samples to.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from meshlab.errors import ConfigError
from meshlab.spec.load import Load, default_extractor, default_path, parse_extractor

CONFIG_ENV = "MESHLAB_LOAD_CONFIG"
EXPERIMENT_ENV = "MESHLAB_EXPERIMENT"
SAMPLES_ENV = "MESHLAB_SAMPLES"
# How the Locust side reports a configuration error to meshlab's runner: this prefix on one line
# of its log, and this exit code.
CONFIG_ERROR_PREFIX = "meshlab: error: "
CONFIG_ERROR_EXIT = 2


@dataclass(frozen=True)
class LocustConfig:
    """Everything the Locust side needs. ``rps=None`` means as fast as the users can go."""

    protocol: str = "v2"
    model: str = "model"
    path: str = "/v2/models/model/infer"
    payloads: str | None = None
    template: str | None = None
    input_name: str = "input-0"
    extractor: str = "outputs[0].data[0]"
    rps: float | None = 50.0
    users: int = 20
    timeout: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[float, float]] = field(default_factory=list)  # (rps, seconds)
    ramp: tuple[float, float, float, float] | None = None  # (from rps, to rps, seconds, step s)
    samples: str | None = None  # spool file; None = do not record
    variants: list[tuple[float, dict[str, str]]] = field(default_factory=list)  # (share, headers)

    @classmethod
    def from_spec(cls, load: Load, *, base_dir: Path | None = None) -> LocustConfig:
        """The config for a spec's ``load`` section; relative files resolve against ``base_dir``."""

        def resolve(name: str | None) -> str | None:
            if name is None or base_dir is None or Path(name).is_absolute():
                return name
            return str((base_dir / name).resolve())

        return cls(
            protocol=load.protocol,
            model=load.model,
            path=load.request_path,
            payloads=resolve(load.payloads),
            template=resolve(load.template),
            input_name=load.input_name,
            extractor=load.extractor_path,
            rps=load.peak_rps,
            users=load.users,
            timeout=load.timeout,
            headers=dict(load.headers),
            variants=[(v.share, dict(v.headers)) for v in load.variants or []],
            steps=[(s.rps, s.duration) for s in load.steps or []],
            ramp=(
                None
                if load.ramp is None
                else (
                    load.ramp.from_rps,
                    load.ramp.to_rps,
                    load.ramp.duration,
                    load.ramp.step_every,
                )
            ),
        )

    @property
    def user_rps(self) -> float | None:
        """Each user's constant throughput (the target rate spread evenly over the users)."""
        return None if self.rps is None else self.rps / self.users

    def users_for(self, rps: float) -> int:
        """Users needed for ``rps`` at the per-user rate (load shapes change rate by user count)."""
        per_user = self.user_rps
        if per_user is None:
            return self.users
        return max(1, min(self.users, math.ceil(rps / per_user - 1e-9)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, where: str = "<config>") -> LocustConfig:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ValueError(f"unknown keys {', '.join(unknown)}")
            data["steps"] = [tuple(s) for s in data.get("steps", [])]
            data["variants"] = [(float(v[0]), dict(v[1])) for v in data.get("variants", [])]
            if data.get("ramp") is not None:
                data["ramp"] = tuple(data["ramp"])
            return cls(**data).validated()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: invalid load config ({exc})") from exc

    def validated(self) -> LocustConfig:
        """Check the fields a hand-written config can get wrong; returns ``self``."""
        if self.protocol not in ("v2", "v1", "json"):
            raise ConfigError(f"protocol: {self.protocol!r} is not v2, v1 or json")
        if self.rps is not None and not (math.isfinite(self.rps) and self.rps > 0):
            raise ConfigError(f"rps: {self.rps} must be a number above 0")
        if self.users < 1:
            raise ConfigError(f"users: {self.users} must be at least 1")
        if not self.path.startswith("/"):
            raise ConfigError(f"path: {self.path!r} must start with '/'")
        try:
            parse_extractor(self.extractor)
        except ValueError as exc:
            raise ConfigError(f"extractor: {exc}") from exc
        return self


# Single environment variables that override one field each, for hand runs with Locust's UI.
ENV_FIELDS: dict[str, tuple[str, type]] = {
    "MESHLAB_MODEL": ("model", str),
    "MESHLAB_PATH": ("path", str),
    "MESHLAB_PAYLOADS": ("payloads", str),
    "MESHLAB_TEMPLATE": ("template", str),
    "MESHLAB_INPUT_NAME": ("input_name", str),
    "MESHLAB_EXTRACTOR": ("extractor", str),
    "MESHLAB_RPS": ("rps", float),
    "MESHLAB_USERS": ("users", int),
    "MESHLAB_TIMEOUT": ("timeout", float),
    SAMPLES_ENV: ("samples", str),
}


def config_from_env(environ: Mapping[str, str], protocol: str | None = None) -> LocustConfig:
    """The config a locustfile runs with: file, then experiment, then single-variable overrides.

    ``protocol`` (from a protocol-specific locustfile) or ``MESHLAB_PROTOCOL`` switches the protocol
    and with it the default path and extractor, unless those are given too.
    """
    config = LocustConfig()
    if CONFIG_ENV in environ:
        file = Path(environ[CONFIG_ENV])
        try:
            config = LocustConfig.from_json(file.read_text(encoding="utf-8"), str(file))
        except OSError as exc:
            raise ConfigError(f"{CONFIG_ENV}={file}: cannot read ({exc.strerror})") from exc
    elif EXPERIMENT_ENV in environ:
        from meshlab.spec.loading import load_experiment

        file = Path(environ[EXPERIMENT_ENV])
        config = LocustConfig.from_spec(load_experiment(file).spec.load, base_dir=file.parent)
    wanted = protocol or environ.get("MESHLAB_PROTOCOL")
    if wanted is not None and wanted != config.protocol:
        model = environ.get("MESHLAB_MODEL", config.model)
        config = replace(
            config,
            protocol=wanted,
            path=default_path(wanted, model),
            extractor=default_extractor(wanted),
        )
    overrides: dict[str, Any] = {}
    for var, (name, kind) in ENV_FIELDS.items():
        if var in environ:
            raw = environ[var]
            if kind is float and raw.lower() in ("max", "none", "unlimited"):
                overrides[name] = None
                continue
            try:
                overrides[name] = kind(raw)
            except ValueError:
                raise ConfigError(f"{var}: {raw!r} is not a valid {kind.__name__}") from None
    if "MESHLAB_MODEL" in environ and "MESHLAB_PATH" not in environ and config.protocol != "json":
        overrides["path"] = default_path(config.protocol, overrides["model"])
    if "MESHLAB_HEADERS" in environ:
        try:
            headers = json.loads(environ["MESHLAB_HEADERS"])
            if not isinstance(headers, dict):
                raise ValueError
        except ValueError:
            raise ConfigError(
                'MESHLAB_HEADERS: must be a JSON object like {"x-user": "a"}'
            ) from None
        overrides["headers"] = {str(k): str(v) for k, v in headers.items()}
    return replace(config, **overrides).validated()

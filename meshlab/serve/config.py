"""What ``meshlab serve`` judges with: the server's settings and the named analysis profiles.

Metrics and tolerances come from one of three places, checked in this order at a session's first
look (and frozen for the session, so a later request cannot loosen them mid-analysis):

1. the request's ``analysis`` argument: a profile name, or an inline ``analysis`` section as JSON;
2. the profile ``default`` of the profiles file given to ``meshlab serve --analysis FILE``;
3. meshlab's default analysis (p50 latency within 10%, error rate within 1 point).

The profiles file is any of: an Experiment spec (its ``spec.analysis`` becomes ``default``); a
Kubernetes ConfigMap manifest whose every ``data`` key holds one ``analysis`` section as YAML (the
key is the profile name); or a plain mapping of profile names to ``analysis`` sections. A directory
(a mounted ConfigMap) is read file by file, each file name a profile name.

``prediction-divergence`` metrics are refused: Prometheus counters carry no predictions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshlab.errors import ConfigError
from meshlab.spec.analysis import Analysis
from meshlab.spec.loading import field_path

DEFAULT_PROFILE = "default"


def parse_analysis(data: Any, where: str) -> Analysis:
    """Validate one ``analysis`` section; errors name ``where`` plus the field path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: an analysis section must be a mapping (alpha, beta, metrics)")
    try:
        analysis = Analysis.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        ctx = err.get("ctx") or {}
        path = field_path(tuple(err["loc"]), str(ctx.get("subpath", "")))
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}{'.' + path if path else ''}: {message}") from None
    for i, metric in enumerate(analysis.metrics):
        if metric.type == "prediction-divergence":
            raise ConfigError(
                f"{where}.metrics[{i}].type: prediction-divergence needs the predictions, which "
                "Prometheus counters do not carry; judge it with 'meshlab shadow'/'meshlab canary' or drop the metric here"
            )
    return analysis


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def profiles_from_data(data: Any, where: str) -> dict[str, Analysis]:
    """Profiles from a parsed file: Experiment spec, ConfigMap, or ``{name: analysis}``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping (Experiment, ConfigMap or profiles)")
    kind = data.get("kind")
    if kind == "Experiment":
        spec = data.get("spec") or {}
        return {
            DEFAULT_PROFILE: parse_analysis(spec.get("analysis") or {}, f"{where}: spec.analysis")
        }
    if kind == "ConfigMap":
        entries = data.get("data") or {}
        if not isinstance(entries, dict) or not entries:
            raise ConfigError(f"{where}: data: the ConfigMap holds no analysis profile")
        return {
            str(name): parse_analysis(
                _yaml(str(text), f"{where}: data.{name}"), f"{where}: data.{name}"
            )
            for name, text in entries.items()
        }
    return {
        str(name): parse_analysis(section, f"{where}: {name}") for name, section in data.items()
    }


def load_profiles(path: Path | None) -> dict[str, Analysis]:
    """The named analyses of ``path`` (file or mounted ConfigMap directory); none when None."""
    if path is None:
        return {}
    if path.is_dir():
        out: dict[str, Analysis] = {}
        for item in sorted(path.iterdir()):
            if item.name.startswith(".") or not item.is_file():
                continue  # a mounted ConfigMap's ..data symlinks
            out[item.name] = parse_analysis(_yaml(item.read_text("utf-8"), str(item)), str(item))
        if not out:
            raise ConfigError(f"{path}: no analysis profile in this directory")
        return out
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--analysis: cannot read {path} ({exc.strerror})") from None
    return profiles_from_data(_yaml(text, str(path)), str(path))


@dataclass(frozen=True)
class PrometheusSettings:
    """Where the counters are; the token is named (env or file), never held here."""

    url: str
    token_env: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    verify_tls: bool = True
    timeout: float = 5.0
    read_lag: float = 10.0  # seconds; Prometheus' default scrape_timeout (see serve.evidence)


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``meshlab serve`` is started with."""

    prometheus: PrometheusSettings
    state_dir: Path
    profiles: Mapping[str, Analysis] = field(default_factory=dict)
    auth_token_env: str | None = None  # callers must send "Authorization: Bearer <token>"
    min_look_gap: float = 1.0  # looks closer than this reuse the previous answer (seconds)

    def analysis(self, argument: str | Mapping[str, Any] | None) -> Analysis:
        """The analysis a request asks for (see the module docstring for the order)."""
        if argument is None or argument == "":
            return self.profiles.get(DEFAULT_PROFILE) or Analysis()
        if isinstance(argument, Mapping):
            return parse_analysis(dict(argument), "analysis")
        text = argument.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"analysis: not valid JSON ({exc.msg} at {exc.pos})") from None
            return parse_analysis(data, "analysis")
        if text not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none loaded (start with --analysis FILE)"
            raise ConfigError(f"analysis: no profile {text!r}; known profiles: {known}")
        return self.profiles[text]

"""Reading an experiment file into a validated :class:`Experiment`, with one-line field-path errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshlab.errors import ConfigError, SpecError
from meshlab.spec.experiment import Experiment


def field_path(loc: tuple[int | str, ...], subpath: str = "") -> str:
    """``("spec", "canary", "steps", 2)`` -> ``"spec.canary.steps[2]"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("str", "int", "float", "list[str]", "[key]"):
            continue  # pydantic's names for union members and validators are not user paths
        else:
            out += f".{part}" if out else part
    return out + subpath


# Error types whose messages meshlab writes itself (they already name the value and the fix).
_OWN_MESSAGES = {
    "unknown_field",
    "dns1123",
    "fraction",
    "duration",
    "weight",
    "header_name",
    "string_match",
    "match",
    "metric",
    "local",
    "strategy",
    "versions",
    "then",
    "load",
    "queries",
    "arm_names",
    "lease",
    "url",
    "control",
}


def _first_error(exc: ValidationError) -> SpecError:
    errors = exc.errors(include_url=False)
    # Prefer errors about a real field over errors from union members the value was not meant for.
    err = errors[0]
    ctx = err.get("ctx") or {}
    message = str(err["msg"])
    if err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "literal_error":
        message = f"{err.get('input')!r} is not allowed; {message.lower()}"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    elif err["type"] not in _OWN_MESSAGES and "input" in err:
        message = f"{message[:1].lower()}{message[1:]} (got {err['input']!r})"
    path = field_path(tuple(err["loc"]), str(ctx.get("subpath", "")))
    more = (
        f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        if len(errors) > 1
        else ""
    )
    return SpecError(path, message + more)


def parse_experiment(data: Any) -> Experiment:
    """Validate already-parsed YAML; raises :class:`SpecError` naming the first bad field."""
    if not isinstance(data, dict):
        raise SpecError(
            "", "an experiment file must be a YAML mapping with apiVersion, kind, metadata, spec"
        )
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from exc


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the experiment file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "an experiment file is YAML saved as UTF-8"
        ) from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from exc
    if len(docs) != 1:
        raise ConfigError(f"{file}: expected exactly one YAML document, found {len(docs)}")
    return parse_experiment(docs[0])

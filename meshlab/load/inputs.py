"""The load's input files, read and encoded exactly as the Locust side will, before anything starts.

``meshlab validate``, ``plan_from_spec`` and :meth:`LoadRun.start` call :func:`encoded_bodies`,
and so does the locustfile (:func:`meshlab.load.locust_user.load_bodies`): a payload file that is
missing, does not parse, or does not fit the protocol is one line naming the field and the file,
exit 2, instead of a Locust process that dies in its log and a run that ends "inconclusive".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshlab.errors import ConfigError
from meshlab.load.config import LocustConfig
from meshlab.load.payloads import build_bodies, make_extractor, read_rows
from meshlab.spec import Experiment


def _template(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"spec.load.template: {path}: cannot read the template ({exc.strerror})"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"spec.load.template: {path}: not JSON ({exc})") from exc


def encoded_bodies(config: LocustConfig) -> list[bytes]:
    """One request body per payload row; :class:`ConfigError` naming the spec field if not."""
    if config.payloads is None:
        raise ConfigError("spec.load.payloads: required to send load; give a .jsonl or .csv file")
    template = None if config.template is None else _template(config.template)
    try:
        rows = read_rows(config.payloads)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"spec.load.payloads: {config.payloads}: not UTF-8 text (byte {exc.start}); "
            "save it as UTF-8 JSONL or CSV"
        ) from exc
    except ConfigError as exc:
        raise ConfigError(f"spec.load.payloads: {exc}") from exc
    try:
        bodies = build_bodies(
            rows,
            config.protocol,
            model=config.model,
            input_name=config.input_name,
            template=template,
            source=config.payloads,
        )
    except ConfigError as exc:
        raise ConfigError(f"spec.load.payloads: {exc}") from exc
    make_extractor(config.extractor)
    return bodies


def check_experiment_inputs(experiment: Experiment, base_dir: Path) -> int:
    """For ``meshlab validate``: the spec's payloads encode (when it has any); returns the rows."""
    load = experiment.spec.load
    if load.payloads is None:
        return 0
    return len(encoded_bodies(LocustConfig.from_spec(load, base_dir=base_dir)))

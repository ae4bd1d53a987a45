"""Analysis sessions and their durable state: one small JSON file per session.

A session is keyed by what the controller sends: Argo Rollouts' namespace, rollout and revision
(the canary's pod-template hash); Flagger's namespace, canary name and checksum. Its file holds the
session's start time, the frozen analysis and arm selectors, the evaluation time of every look,
and the first decision. That is all the evidence needs: it is recomputed from Prometheus' cumulative
counters at exactly those times (:mod:`meshlab.serve.evidence`), so a restarted ``meshlab serve``
answers the next look as if it had never stopped, and a decision once reached stays reached
(the error budget cannot be reset by a restart). Files are replaced atomically (write, fsync,
rename); a file that cannot be read is an error, never a silent fresh start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from meshlab.errors import ConfigError, MeshlabError
from meshlab.serve.targets import Target
from meshlab.spec.analysis import Analysis

Controller = Literal["argo", "flagger"]
FORMAT = 1
_UNSAFE = re.compile(r"[^a-z0-9.-]+")


class StateError(MeshlabError):
    """A session's state file exists but cannot be read or written."""


@dataclass(frozen=True)
class SessionKey:
    """What identifies one analysis of one revision by one controller."""

    controller: Controller
    namespace: str
    name: str
    revision: str

    def __post_init__(self) -> None:
        for field_name in ("namespace", "name", "revision"):
            if not getattr(self, field_name):
                raise ConfigError(f"{field_name}: required to key the analysis session")

    @property
    def slug(self) -> str:
        """A file-name-safe, collision-free name for this key."""
        parts = (self.controller, self.namespace, self.name, self.revision)
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
        readable = _UNSAFE.sub("_", "-".join(parts[1:]).lower())[:80]
        return f"{self.controller}-{readable}-{digest}"

    def to_json(self) -> dict[str, str]:
        return {
            "controller": self.controller,
            "namespace": self.namespace,
            "name": self.name,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class Decision:
    """The first promote or abort of a session (sticky)."""

    verdict: Literal["promote", "abort"]
    look: int
    at: float


@dataclass(frozen=True)
class SessionRecord:
    """The durable state of one session."""

    key: SessionKey
    started_at: float
    analysis: Analysis
    target: Target
    looks: tuple[float, ...] = ()
    decision: Decision | None = None
    last_answer: dict[str, Any] = field(default_factory=dict)
    read_lag: float = 0.0  # reads are evaluated this long before each recorded time (see evidence)

    def with_look(
        self, at: float, answer: dict[str, Any], decision: Decision | None
    ) -> SessionRecord:
        return replace(
            self, looks=(*self.looks, at), last_answer=answer, decision=self.decision or decision
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key": self.key.to_json(),
            "started_at": self.started_at,
            "analysis": self.analysis.model_dump(mode="json", by_alias=True),
            "target": self.target.to_json(),
            "looks": list(self.looks),
            "decision": None
            if self.decision is None
            else {
                "verdict": self.decision.verdict,
                "look": self.decision.look,
                "at": self.decision.at,
            },
            "last_answer": self.last_answer,
            "read_lag": self.read_lag,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown state format {data.get('format')!r}")
        d = data.get("decision")
        return cls(
            key=SessionKey(**data["key"]),
            started_at=float(data["started_at"]),
            analysis=Analysis.model_validate(data["analysis"]),
            target=Target.from_json(data["target"]),
            looks=tuple(float(t) for t in data["looks"]),
            decision=None if d is None else Decision(d["verdict"], int(d["look"]), float(d["at"])),
            last_answer=dict(data.get("last_answer") or {}),
            read_lag=float(data.get("read_lag", 0.0)),  # records from before the lag: none
        )


class StateStore:
    """Session records as files in one directory, with one lock per session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--state-dir: cannot create {directory} ({exc.strerror}); give a writable directory"
            ) from None
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: SessionKey) -> threading.Lock:
        """The lock serializing the looks of one session."""
        with self._guard:
            return self._locks.setdefault(key.slug, threading.Lock())

    def path(self, key: SessionKey) -> Path:
        return self.directory / f"{key.slug}.json"

    def load(self, key: SessionKey) -> SessionRecord | None:
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"session state {path}: cannot read ({exc.strerror})") from None
        try:
            record = SessionRecord.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"session state {path} is unreadable ({type(exc).__name__}); move it away to "
                "start this analysis afresh"
            ) from None
        if record.key != key:
            raise StateError(f"session state {path} belongs to another session")
        return record

    def save(self, record: SessionRecord) -> None:
        path = self.path(record.key)
        tmp = path.with_suffix(".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump(record.to_json(), fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise StateError(f"session state {path}: cannot write ({exc.strerror})") from None

    def sessions(self) -> list[SessionRecord]:
        """Every readable session (for the index page)."""
        out = []
        for item in sorted(self.directory.glob("*.json")):
            try:
                out.append(SessionRecord.from_json(json.loads(item.read_text("utf-8"))))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

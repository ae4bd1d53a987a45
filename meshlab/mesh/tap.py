"""Mirrored responses captured by Envoy's tap filter, turned into ``meshlab.samples.Sample`` rows.

The candidate's sidecar taps every request whose authority ends in ``-shadow`` (the mirrored
copies) and writes one ``JSON_BODY_AS_STRING`` trace per exchange. A trace carries the request and
response headers with the times Envoy received them (``record_headers_received_time``) and the
response body, from which the prediction is extracted with the spec's ``load.extractor`` path. The
row's ``request_id`` is the copied ``x-request-id``, so the controller pairs it with the primary.

``latency_ms`` is measured at the sidecar (request headers in -> response headers back), so it
leaves out the outbound proxy's hop that the load generator's primary latencies include.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from meshlab.samples import Sample

# Envoy writes a trace file in one go when the exchange ends; a file that does not parse yet is
# retried until it is this old, then dropped as broken.
PARTIAL_FILE_GRACE_S = 5.0


def _headers(message: dict[str, Any]) -> dict[str, str]:
    return {str(h["key"]).lower(): str(h.get("value", "")) for h in message.get("headers", [])}


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def extract_prediction(body: str, path: Sequence[str | int]) -> str:
    """The JSON text of the value at ``path`` in a JSON body, "" if absent or not JSON."""
    try:
        value: Any = json.loads(body)
    except ValueError:
        return ""
    for step in path:
        in_list = (
            isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value)
        )
        in_dict = isinstance(step, str) and isinstance(value, dict) and step in value
        if not (in_list or in_dict):
            return ""
        value = value[step]
    return json.dumps(value, separators=(",", ":"))


def sample_from_trace(trace: dict[str, Any], arm: str, path: Sequence[str | int]) -> Sample | None:
    """One mirrored Sample from a tap trace; None if the trace lacks an ``x-request-id``."""
    exchange = trace.get("http_buffered_trace", {})
    request, response = exchange.get("request", {}), exchange.get("response", {})
    request_id = _headers(request).get("x-request-id")
    if not request_id:
        return None
    started = _time(request["headers_received_time"])
    answered = response.get("headers_received_time")
    latency = max(0.0, (_time(answered) - started) * 1000.0) if answered else 0.0
    status_text = _headers(response).get(":status", "0")
    status = int(status_text) if status_text.isdigit() else 0
    body = response.get("body", {}).get("as_string", "")
    prediction = extract_prediction(body, path) if 200 <= status < 300 else ""
    return Sample(started, arm, request_id, latency, status, prediction, mirrored=True)


class TapReader:
    """Drains a tap directory: each call returns the samples of traces written since the last."""

    def __init__(self, directory: Path, prefix: str, arm: str, path: Sequence[str | int]) -> None:
        self.directory = directory
        self.prefix = prefix
        self.arm = arm
        self.path = tuple(path)
        self.dropped = 0  # traces that never parsed, or had no x-request-id
        self._held: list[Sample] = []

    def drain(self, settle: float = 0.0) -> list[Sample]:
        """New mirrored samples in order of start time; their files are deleted.

        With ``settle`` > 0, samples that started less than ``settle`` seconds ago are held back
        for a later call, so that successive calls stay in start-time order even when a slower
        copy that started earlier finishes later (as long as it takes under ``settle``).
        """
        out: list[Sample] = self._held
        now = time.time()
        for file in sorted(self.directory.glob(f"{self.prefix}_*.json")):
            try:
                trace = json.loads(file.read_text(encoding="utf-8"))
                sample = sample_from_trace(trace, self.arm, self.path)
            except (ValueError, KeyError, OSError):
                try:
                    if now - file.stat().st_mtime < PARTIAL_FILE_GRACE_S:
                        continue  # probably still being written
                except OSError:
                    continue
                sample = None
            file.unlink(missing_ok=True)
            if sample is None:
                self.dropped += 1
            else:
                out.append(sample)
        out.sort(key=lambda s: s.timestamp)
        cut = len(out)
        if settle > 0:
            cut = next((i for i, s in enumerate(out) if s.timestamp > now - settle), len(out))
        self._held = out[cut:]
        return out[:cut]

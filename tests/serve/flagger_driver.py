"""Flagger's canary analysis loop, as far as webhooks go: payload, 2xx semantics, hook order.

Follows Flagger v1 (``pkg/controller/scheduler.go``, ``webhook.go``): every interval it (1) rolls
back once failed checks reach ``threshold``; (2) calls the ``rollback`` hooks, and rolls back at
once if one answers 2xx; (3) calls the ``rollout`` hooks, and a failed call (non-2xx, timeout) adds
one failed check and ends the iteration; (4) below ``maxWeight``, asks the
``confirm-traffic-increase`` hooks and steps the weight by ``stepWeight`` when all answer 2xx;
(5) at ``maxWeight``, asks the ``confirm-promotion`` hooks and promotes when all answer 2xx.
Each call is an HTTP POST of ``{"name", "namespace", "phase", "checksum", "metadata"}`` with
``Content-Type: application/json``; a status above 202 is a failure (``CallWebhook``).
Flagger's built-in metric checks are left out: the shipped Canary uses meshlab's hooks only.

This is a faithful emulation at a seam that cannot run here (no Kubernetes, no Flagger).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx


def _seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts) or 10.0


@dataclass
class Call:
    hook: str
    status: int
    body: Any


@dataclass
class CanaryRun:
    """One Canary's analysis, iterated by hand (each :meth:`iterate` is one ``interval``)."""

    canary: dict[str, Any]
    base_url: str  # replaces scheme://host:port of each webhook URL (no cluster DNS here)
    checksum: str
    metadata: dict[str, str] = field(default_factory=dict)  # merged over each hook's metadata
    weight: int = 0
    failed_checks: int = 0
    phase: str = "Progressing"
    calls: list[Call] = field(default_factory=list)

    @property
    def analysis(self) -> dict[str, Any]:
        return dict(self.canary["spec"]["analysis"])

    def _hooks(self, kind: str) -> list[dict[str, Any]]:
        return [h for h in self.analysis.get("webhooks", []) if h.get("type", "rollout") == kind]

    def _call(self, hook: dict[str, Any]) -> bool:
        url = self.base_url + "/" + hook["url"].split("://", 1)[1].split("/", 1)[1]
        payload = {
            "name": self.canary["metadata"]["name"],
            "namespace": self.canary["metadata"]["namespace"],
            "phase": self.phase,
            "checksum": self.checksum,
            "metadata": {**hook.get("metadata", {}), **self.metadata},
        }
        try:
            answer = httpx.post(url, json=payload, timeout=_seconds(hook.get("timeout", "10s")))
        except httpx.HTTPError:
            self.calls.append(Call(hook.get("type", "rollout"), 0, None))
            return False
        try:
            body = answer.json()
        except ValueError:
            body = answer.text
        self.calls.append(Call(hook.get("type", "rollout"), answer.status_code, body))
        return answer.status_code <= 202

    def iterate(self) -> str:
        """One interval of the analysis; returns the phase (Progressing, Succeeded, Failed)."""
        if self.phase != "Progressing":
            return self.phase
        analysis = self.analysis
        if self.failed_checks >= int(analysis.get("threshold", 0)):
            self.phase = "Failed"
            return self.phase
        for hook in self._hooks("rollback"):
            if self._call(hook):
                self.phase = "Failed"
                return self.phase
        for hook in self._hooks("rollout"):
            if not self._call(hook):
                self.failed_checks += 1
                return self.phase
        max_weight = int(analysis.get("maxWeight", 100))
        if self.weight < max_weight:
            if all(self._call(h) for h in self._hooks("confirm-traffic-increase")):
                self.weight = min(max_weight, self.weight + int(analysis.get("stepWeight", 10)))
            return self.phase
        if all(self._call(h) for h in self._hooks("confirm-promotion")):
            self.phase = "Succeeded"
        return self.phase

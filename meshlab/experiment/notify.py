"""Webhook notifications on every state change: generic JSON, or a Slack-compatible payload.

Notifications are best effort: a webhook that fails or times out is reported once on the progress
stream and never stops or delays a rollback (short timeout, errors swallowed after logging).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from meshlab.spec.target import Webhook

log = logging.getLogger(__name__)
EMOJI = {
    "promoted": ":white_check_mark:",
    "aborted": ":x:",
    "inconclusive": ":grey_question:",
    "failed": ":warning:",
    "rolled-back": ":leftwards_arrow_with_hook:",
}


def payload(webhook: Webhook, event: dict[str, Any]) -> dict[str, Any]:
    """The body sent for ``event`` in the webhook's format."""
    if webhook.format == "json":
        return {"source": "meshlab", **event}
    phase = str(event.get("phase", ""))
    text = (
        f"{EMOJI.get(phase, ':information_source:')} meshlab *{event.get('experiment')}* "
        f"({event.get('strategy')}): {event.get('event')} — phase {phase}, step {event.get('step')}"
    )
    if event.get("detail"):
        text += f"\n{event['detail']}"
    return {"text": text}


def _redact(url: str) -> str:
    """Webhook URLs carry secrets (Slack's do): log only scheme and host."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}/…"


class Notifier:
    """Posts every event to every configured webhook."""

    def __init__(
        self,
        webhooks: Sequence[Webhook],
        timeout: float = 2.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._webhooks = list(webhooks)
        self._client = (
            httpx.Client(timeout=timeout, transport=transport) if self._webhooks else None
        )
        self.failures: list[str] = []

    def send(self, event: dict[str, Any]) -> None:
        if self._client is None:
            return
        for hook in self._webhooks:
            try:
                response = self._client.post(hook.url, json=payload(hook, event))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                message = f"webhook {_redact(hook.url)} failed: {type(exc).__name__}"
                self.failures.append(message)
                log.warning(message)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

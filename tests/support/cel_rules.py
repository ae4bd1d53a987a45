"""The CEL rules of the vendored CRDs, evaluated in Python (no CEL interpreter runs here).

A rule is recognised verbatim (whitespace folded) and evaluated by its Python equivalent:
:func:`rule_check` for the rules of Istio's networking CRDs (``self`` only), :func:`transition_check`
for transition rules (``self`` and ``oldSelf``, evaluated on update only). Any other rule raises
:class:`UnsupportedRule` instead of silently passing: extend the tables rather than let it pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class UnsupportedRule(ValueError):
    """A CEL rule this validator does not know; extend ``_RULES`` rather than let it pass."""


def go_duration_seconds(text: str) -> float:
    """Parse a Go/CEL duration (``"1h2m"``, ``"1.5s"``, ``"100ms"``); ValueError if malformed."""
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}")
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION_PART.findall(text))


def _duration_at_least_1ms(value: Any) -> bool:
    try:
        return isinstance(value, str) and go_duration_seconds(value) >= 0.001
    except ValueError:
        return False  # CEL's duration() errors on malformed input, which rejects the object


_RULES: dict[str, Callable[[Any], bool]] = {
    "duration(self) >= duration('1ms')": _duration_at_least_1ms,
    '!self.contains("*")': lambda v: "*" not in v,
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    "self.all(key, key.size() != 0)": lambda v: all(len(k) != 0 for k in v),
    "0 < self && self <= 65535": lambda v: 0 < v <= 65535,
    "self.size() == 0": lambda v: len(v) == 0,
    'self != "*"': lambda v: v != "*",
    'self in ["", "HTTP", "HTTPS"]': lambda v: v in ("", "HTTP", "HTTPS"),
    # Sidecar, PeerAuthentication and AuthorizationPolicy (the collector's mesh policies).
    "(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1": lambda v: (
        ("credentialName" in v) + ("credentialNames" in v) <= 1
    ),
    "(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1": lambda v: (
        ("credentialNames" in v) + ("tlsCertificates" in v) <= 1
    ),
    "(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1": lambda v: (
        ("tlsCertificates" in v) + ("credentialNames" in v) <= 1
    ),
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": lambda v: (
        ("selector" in v) + ("targetRef" in v) + ("targetRefs" in v) <= 1
    ),
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) && !has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true": lambda v: (
        not ("serviceAccounts" in v or "notServiceAccounts" in v)
        or not any(k in v for k in ("principals", "notPrincipals", "namespaces", "notNamespaces"))
    ),
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels : {}).size() > 0) : true": lambda v: (
        "portLevelMtls" not in v or len((v.get("selector") or {}).get("matchLabels") or {}) > 0
    ),
    "self.all(key, 0 < int(key) && int(key) <= 65535)": lambda v: all(
        0 < int(k) <= 65535 for k in v
    ),
}


# Transition rules (``oldSelf``): evaluated on update with the stored value, never on create.
_TRANSITION_RULES: dict[str, Callable[[Any, Any], bool]] = {
    "self == oldSelf": lambda v, old: v == old,  # an immutable field (Argo Rollouts' selector)
}


def transition_check(rule: str) -> Callable[[Any, Any], bool]:
    text = " ".join(rule.split())
    try:
        return _TRANSITION_RULES[text]
    except KeyError:
        raise UnsupportedRule(f"CEL transition rule not understood: {text!r}") from None


def rule_check(rule: str) -> Callable[[Any], bool]:
    text = " ".join(rule.split())
    try:
        return _RULES[text]
    except KeyError:
        raise UnsupportedRule(f"CEL rule not understood by the test validator: {text!r}") from None

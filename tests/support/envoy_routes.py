"""Comparing Envoy route configurations by the routing decisions they make.

Envoy takes the first route that matches. Two configurations decide every request alike when they
are equal except for the order of consecutive routes with the same action and header operations
(whichever of them matches first, the request is handled the same way). The Gateway API's
precedence can reorder meshlab's header-matched rules (all of them send to the candidate), never
move them past the catch-all, which is what this checks.
"""

from __future__ import annotations

import json
from typing import Any

_OUTCOME_KEYS = (
    "route",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
)


def _outcome(route: dict[str, Any]) -> str:
    return json.dumps({k: route.get(k) for k in _OUTCOME_KEYS}, sort_keys=True)


def _runs(routes: list[dict[str, Any]]) -> list[list[str]]:
    """Consecutive routes with one outcome, each run as the sorted list of its routes."""
    runs: list[tuple[str, list[str]]] = []
    for route in routes:
        outcome = _outcome(route)
        if not runs or runs[-1][0] != outcome:
            runs.append((outcome, []))
        runs[-1][1].append(json.dumps(route, sort_keys=True))
    return [sorted(items) for _, items in runs]


def same_decisions(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when ``a`` and ``b`` route every request the same way (see the module docstring)."""
    strip = {k: v for k, v in a.items() if k != "virtual_hosts"}
    if strip != {k: v for k, v in b.items() if k != "virtual_hosts"}:
        return False
    (host_a,), (host_b,) = a["virtual_hosts"], b["virtual_hosts"]
    rest_a = {k: v for k, v in host_a.items() if k != "routes"}
    rest_b = {k: v for k, v in host_b.items() if k != "routes"}
    return rest_a == rest_b and _runs(host_a["routes"]) == _runs(host_b["routes"])

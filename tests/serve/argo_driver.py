"""Argo Rollouts' AnalysisRun, as far as a web metric goes: request, jsonPath, conditions, limits.

Follows argo-rollouts v1.9 (the version whose CRDs are vendored): ``metricproviders/webmetric``
(GET/POST/PUT of ``url`` with the ``{{args.*}}`` substituted, ``headers``, ``timeoutSeconds``, a
non-2xx answer or a body that is not JSON is a measurement *Error*), ``jsonPath`` evaluated like
``k8s.io/client-go/util/jsonpath`` for ``{$.a.b}`` paths, ``utils/evaluate.EvaluateResult``
(success true -> Successful; failure true -> Failed; both conditions given and neither true ->
Inconclusive; only one given -> its negation decides), and the metric assessment of
``analysis/analysis.go`` with the documented ``consecutiveSuccessLimit`` (``docs/features/
analysis.md``): failed > failureLimit -> Failed, inconclusive > inconclusiveLimit -> Inconclusive,
consecutive errors > consecutiveErrorLimit (default 4) -> Error, consecutive successes >=
consecutiveSuccessLimit -> Successful, count reached -> Inconclusive if a consecutiveSuccessLimit
was set and not met, else Successful. Only the expression forms the shipped template uses are
evaluated (comparisons of ``result`` or ``result.field`` with literals, ``&&``, ``||``); anything
else raises, so a template change cannot silently pass here.

This is a faithful emulation at a seam that cannot run here (no Kubernetes, no Argo controller).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def substitute(text: str, args: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in args:
            raise KeyError(f"argument {name!r} has no value")
        return args[name]

    return _ARG.sub(one, text)


def json_path(path: str, data: Any) -> Any:
    """``{$.a.b}`` (or ``{.a.b}``) of ``data``, as client-go's jsonpath finds it."""
    match = re.fullmatch(r"\{\$?((?:\.[A-Za-z0-9_-]+)*)\}", path.strip())
    if not match:
        raise ValueError(f"unsupported jsonPath {path!r}")
    for part in match.group(1).split(".")[1:]:
        if not isinstance(data, dict) or part not in data:
            raise LookupError(f"{part} is not found")
        data = data[part]
    return data


_TOKEN = re.compile(
    r'\s*(\|\||&&|==|!=|>=|<=|>|<|\(|\)|"[^"]*"|\'[^\']*\'|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?)'
)


def evaluate(expression: str, result: Any) -> bool:
    """The boolean value of an Argo condition over ``result`` (a small subset of expr-lang)."""
    tokens = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if not match:
            if expression[pos:].strip() == "":
                break
            raise ValueError(f"cannot parse condition {expression!r} at {pos}")
        tokens.append(match.group(1))
        pos = match.end()
    index = 0

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> str:
        nonlocal index
        index += 1
        return tokens[index - 1]

    def value() -> Any:
        tok = take()
        if tok == "(":
            out = disjunction()
            assert take() == ")"
            return out
        if tok[0] in "\"'":
            return tok[1:-1]
        if tok in ("true", "false"):
            return tok == "true"
        if re.fullmatch(r"-?\d+(?:\.\d+)?", tok):
            return float(tok)
        if tok == "result" or tok.startswith("result."):
            out = result
            for part in tok.split(".")[1:]:
                out = out[part]
            return out
        raise ValueError(f"unsupported term {tok!r}")

    def comparison() -> Any:
        left = value()
        op = peek()
        if op in ("==", "!=", ">=", "<=", ">", "<"):
            take()
            right = value()
            return {
                "==": lambda: left == right, "!=": lambda: left != right,
                ">=": lambda: left >= right, "<=": lambda: left <= right,
                ">": lambda: left > right, "<": lambda: left < right,
            }[op]()  # fmt: skip
        return left

    def conjunction() -> Any:
        out = comparison()
        while peek() == "&&":
            take()
            right = comparison()
            out = bool(out) and bool(right)
        return out

    def disjunction() -> Any:
        out = conjunction()
        while peek() == "||":
            take()
            right = conjunction()
            out = bool(out) or bool(right)
        return out

    out = disjunction()
    if index != len(tokens):
        raise ValueError(f"trailing tokens in {expression!r}")
    return bool(out)


def measurement_phase(result: Any, metric: dict[str, Any]) -> str:
    success_cond, failure_cond = metric.get("successCondition"), metric.get("failureCondition")
    success = evaluate(success_cond, result) if success_cond else False
    failure = evaluate(failure_cond, result) if failure_cond else False
    if not success_cond and not failure_cond:
        return "Successful"
    if success_cond and not failure_cond:
        failure = not success
    if failure_cond and not success_cond:
        success = not failure
    if failure:
        return "Failed"
    if not success:
        return "Inconclusive"
    return "Successful"


def _int(metric: dict[str, Any], name: str, default: int) -> int:
    return int(metric.get(name, default))


@dataclass
class Measurement:
    phase: str
    value: Any
    body: dict[str, Any] | None
    status: int
    seconds: float


@dataclass
class AnalysisRun:
    """One metric of an AnalysisRun, measured by hand (each :meth:`measure` is one interval)."""

    metric: dict[str, Any]
    args: dict[str, str]
    base_url: str  # replaces scheme://host:port of the template's URL (no cluster DNS here)
    measurements: list[Measurement] = field(default_factory=list)

    def measure(self) -> Measurement:
        web = self.metric["provider"]["web"]
        url = substitute(web["url"], self.args)
        url = self.base_url + "/" + url.split("://", 1)[1].split("/", 1)[1]
        headers = {h["key"]: substitute(h["value"], self.args) for h in web.get("headers", [])}
        method = web.get("method", "GET")
        body = None
        if "jsonBody" in web:
            headers["Content-Type"] = "application/json"
            body = substitute(json.dumps(web["jsonBody"]), self.args)
        elif "body" in web:
            body = substitute(web["body"], self.args)
        started = time.monotonic()
        try:
            answer = httpx.request(
                method, url, headers=headers, content=body, timeout=web.get("timeoutSeconds", 10)
            )
        except httpx.HTTPError:
            return self._add(Measurement("Error", None, None, 0, time.monotonic() - started))
        seconds = time.monotonic() - started
        if not 200 <= answer.status_code < 300:
            return self._add(Measurement("Error", None, None, answer.status_code, seconds))
        try:
            data = answer.json()
            value = json_path(web["jsonPath"], data) if web.get("jsonPath") else data
        except (ValueError, LookupError):
            return self._add(Measurement("Error", None, None, answer.status_code, seconds))
        phase = measurement_phase(value, self.metric)
        return self._add(Measurement(phase, value, data, answer.status_code, seconds))

    def _add(self, m: Measurement) -> Measurement:
        self.measurements.append(m)
        return m

    def phase(self) -> str:
        """Running, Successful, Failed, Inconclusive or Error."""
        phases = [m.phase for m in self.measurements]
        failed, inconclusive = phases.count("Failed"), phases.count("Inconclusive")
        failure_limit = _int(self.metric, "failureLimit", 0)
        if failure_limit >= 0 and failed > failure_limit:
            return "Failed"
        if inconclusive > _int(self.metric, "inconclusiveLimit", 0):
            return "Inconclusive"
        errors = 0
        for p in reversed(phases):
            if p != "Error":
                break
            errors += 1
        if errors > _int(self.metric, "consecutiveErrorLimit", 4):
            return "Error"
        success_limit = _int(self.metric, "consecutiveSuccessLimit", 0)
        streak = 0
        for p in reversed(phases):
            if p != "Successful":
                break
            streak += 1
        if success_limit > 0 and streak >= success_limit:
            return "Successful"
        count = self.metric.get("count")
        if count is not None and len(phases) >= int(count):
            return "Inconclusive" if success_limit > 0 else "Successful"
        return "Running"

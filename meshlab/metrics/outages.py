"""Prometheus failures classified once: which are worth holding through, which are final.

Every failure of a query is turned into one :class:`~meshlab.errors.MetricsError` here, by
:func:`classify`, so the hold/abort policy (``meshlab.metrics.base``) never guesses::

    transient -> RetryableMetricsError (hold; abort after the grace period)
        connection refused or reset, DNS failure      requests.ConnectionError
        no answer within the query timeout            requests.Timeout, the look's deadline
        an answer cut off mid-body                    ChunkedEncodingError, ContentDecodingError,
                                                      a 200 whose JSON does not parse (once the
                                                      server has answered well before)
        HTTP 5xx, 429                                 overloaded, restarting, behind a proxy
    permanent -> PermanentMetricsError (error at once, one line)
        HTTP 400, 422                                 the query is bad: the template or its variables
        HTTP 401, 403                                 the bearer token: "check the token"
        HTTP 404, other 4xx                           the URL is not a Prometheus API
        TLS verification failed                       give the CA, or fix the URL
        a 200 that is not Prometheus JSON, before any good answer: the URL points elsewhere

Messages name the server with credentials stripped and never carry the token.
"""

from __future__ import annotations

import ast
import json
import re

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException

from meshlab.errors import MetricsError, PermanentMetricsError, RetryableMetricsError

TOKEN_FIELDS = "spec.metrics.prometheus.tokenEnv/tokenFile"
_STATUS = re.compile(r"^HTTP Status Code (\d{3}) \((.*)\)$", re.DOTALL)


def status_and_body(exc: PrometheusApiClientException) -> tuple[int | None, str]:
    """The HTTP status and Prometheus' own error text from the client's exception."""
    match = _STATUS.match(str(exc))
    if match is None:
        return None, ""
    error = ""
    try:
        raw = ast.literal_eval(match[2])  # the client puts repr(response.content) in its message
        body = json.loads(raw) if isinstance(raw, bytes) else None
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        error = ""
    return int(match[1]), " ".join(error.split())[:200]


def classify(
    exc: BaseException, where: str, what: str, timeout: float, answered_before: bool
) -> MetricsError:
    """The meshlab error for ``exc``, raised while running the ``what`` query against ``where``."""
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentMetricsError(
            f"Prometheus at {where}: TLS verification failed; give the server's CA (queries.caFile)"
            " or, only for a test server, set spec.metrics.prometheus.verifyTls: false"
        )
    if isinstance(exc, requests.Timeout) or _timed_out(exc):
        return RetryableMetricsError(
            f"Prometheus at {where} did not answer the {what} query within the query timeout "
            f"({timeout:g}s, spec.metrics.prometheus.queryTimeout); holding"
        )
    if isinstance(exc, requests.ConnectionError):
        return RetryableMetricsError(
            f"Prometheus at {where} unreachable ({_connection_reason(exc)}) running the {what} "
            "query; holding until it answers"
        )
    if isinstance(
        exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    ):
        return RetryableMetricsError(
            f"Prometheus at {where} cut off its answer to the {what} query ({type(exc).__name__}); "
            "holding"
        )
    if isinstance(exc, PrometheusApiClientException):
        return _http_status(exc, where, what)
    if isinstance(
        exc, ValueError | KeyError | TypeError | IndexError
    ):  # 200, but not the API's JSON
        if answered_before:
            return RetryableMetricsError(
                f"Prometheus at {where} sent an unreadable answer to the {what} query (cut off?); "
                "holding"
            )
        return PermanentMetricsError(
            f"spec.metrics.prometheus.url: {where} answered the {what} query with something that "
            "is not Prometheus' query API; point the URL at Prometheus (e.g. http://host:9090)"
        )
    return PermanentMetricsError(
        f"Prometheus at {where}: {type(exc).__name__} running the {what} query"
    )


def _timed_out(exc: BaseException) -> bool:
    """A read timeout that requests reports as a ConnectionError (urllib3 gave up retrying: the
    client is built with no retries, so every read timeout arrives wrapped in MaxRetryError)."""
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # NewConnectionError (refused, unresolvable) subclasses ConnectTimeoutError for history's sake.
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def _connection_reason(exc: requests.ConnectionError) -> str:
    text = str(exc).lower()
    for needle, reason in (
        ("refused", "connection refused"),
        ("reset", "connection reset"),
        ("name or service", "name not resolved"),
        ("resolve", "name not resolved"),
        ("remote end closed", "connection closed without an answer"),
        ("broken", "connection broken"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


def _http_status(exc: PrometheusApiClientException, where: str, what: str) -> MetricsError:
    status, error = status_and_body(exc)
    said = f": {error}" if error else ""
    if status is None:
        return PermanentMetricsError(f"Prometheus at {where}: {what} query failed ({exc})")
    if status >= 500 or status == 429:
        return RetryableMetricsError(
            f"Prometheus at {where} answered HTTP {status} to the {what} query; holding"
        )
    if status in (401, 403):
        return PermanentMetricsError(
            f"Prometheus at {where} refused the {what} query with HTTP {status}, check the token: "
            f"check the bearer token ({TOKEN_FIELDS}) is current and may query Prometheus"
        )
    if status in (400, 422):
        return PermanentMetricsError(
            f"Prometheus at {where} rejected the {what} query as bad (HTTP {status}{said}); check "
            "spec.metrics.prometheus.queries and the template variables"
        )
    return PermanentMetricsError(
        f"spec.metrics.prometheus.url: {where} answered HTTP {status} to the {what} query{said}; "
        "point the URL at Prometheus (e.g. http://host:9090)"
    )

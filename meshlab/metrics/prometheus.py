"""Where to query: the Prometheus backend (``prometheus-api-client``), per-arm deltas over time.

Each :meth:`PrometheusMetrics.fetch` runs the template set's two queries per arm as instant queries
at one evaluation time, keeps the last value of every series it has ever seen, and turns the
per-series increases (a decrease = the process restarted) into pseudo-samples with
:mod:`meshlab.metrics.histogram`. Keeping the last value of vanished series means a series that
goes stale during a failed scrape and comes back is not counted twice.

Failures are classified once by :func:`meshlab.metrics.outages.classify` (transient: hold;
permanent: error at once). One look's queries share one deadline, ``timeout`` seconds from the
look's start (``spec.metrics.prometheus.queryTimeout``), and the first transient failure ends the
look, so a frozen Prometheus costs one timeout per look, never one per query.

Secrets: the bearer token is read from an environment variable or a file (re-read on every query,
so rotated Kubernetes tokens keep working), wrapped in :class:`Secret`, sent only as the
``Authorization`` header, and never appears in reprs, logs or error messages. Credentials embedded
in the URL are stripped from every message. TLS certificates are verified unless told otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from meshlab.errors import ConfigError, MetricsError, RetryableMetricsError
from meshlab.metrics.base import ArmTotals, Clock, Window, empty_samples
from meshlab.metrics.histogram import ArmWindow, Buckets, counter_delta, describe, window_columns
from meshlab.metrics.outages import classify
from meshlab.metrics.templates import TemplateSet
from meshlab.samples import ALL_ARMS, ARMS, Samples
from meshlab.secrets import read_token

SeriesKey = tuple[tuple[str, str], ...]


class Secret:
    """A string that never shows itself in ``repr``/``str`` (tokens, passwords)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def load_token(
    token_env: str | None = None,
    token_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Secret | None:
    """The bearer token from ``$token_env`` or ``token_file`` (env wins), or None if neither is set.

    A variable or file that is named but missing/empty is a ConfigError naming the field.
    """
    value = read_token("spec.metrics.prometheus", token_env, token_file, environ)
    return None if value is None else Secret(value)


def redact_url(url: str) -> str:
    """``url`` without user:password (safe for messages)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PrometheusMetrics:
    """A :class:`~meshlab.metrics.base.MetricsProvider` reading one experiment from Prometheus.

    ``arms`` maps ``baseline``/``candidate`` (and ``control``, with ``spec.control``) to the
    template variables selecting that arm's series. ``mirrored_arm`` marks that arm's (or those
    arms') pseudo-samples as mirrored (shadow tests: the candidate, and the control).
    """

    def __init__(
        self,
        url: str,
        templates: TemplateSet,
        arms: Mapping[str, Mapping[str, str]],
        *,
        token_env: str | None = None,
        token_file: str | None = None,
        verify_tls: bool = True,
        ca_file: str | None = None,
        timeout: float = 5.0,
        mirrored_arm: str | tuple[str, ...] | None = None,
        clock: Clock = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not set(ARMS) <= set(arms) <= set(ALL_ARMS):
            raise ConfigError(
                f"arms must be {', '.join(ARMS)} and optionally control (got {', '.join(arms)})"
            )
        self.arms = tuple(arm for arm in ALL_ARMS if arm in arms)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError("spec.metrics.prometheus.queryTimeout: must be above 0 (e.g. '5s')")
        self.name = f"prometheus({templates.name})"
        self.url = url.rstrip("/")
        self.label = f"Prometheus at {redact_url(self.url)}"  # how messages name this source
        self.templates = templates
        self._queries = {arm: templates.render(values) for arm, values in arms.items()}
        self._token_env, self._token_file, self._environ = token_env, token_file, environ
        load_token(token_env, token_file, environ)  # fail fast on a misconfigured token
        mirrored = (mirrored_arm,) if isinstance(mirrored_arm, str) else (mirrored_arm or ())
        self._mirrored = tuple(ALL_ARMS.index(arm) for arm in mirrored if arm in self.arms)
        self._clock = clock
        self._timeout = timeout
        self.query_timeout = timeout  # seconds for one look's queries together
        session = requests.Session()
        session.verify = ca_file if (verify_tls and ca_file) else verify_tls
        self._client = PrometheusConnect(
            url=self.url,
            session=session,
            # No client-side retries: an outage is the caller's to hold through (fetch_or_hold).
            retry=Retry(total=0, connect=0, read=0, status=0, redirect=0),
            timeout=timeout,  # type: ignore[arg-type]  # requests accepts float seconds
        )
        self._last: dict[str, dict[str, dict[SeriesKey, float]]] = {
            arm: {"requests": {}, "latency": {}} for arm in self.arms
        }
        self._started_at: float | None = None
        self._carried: dict[str, dict[int, int]] = {}
        self._bounds: tuple[float, ...] | None = None
        self._seq = 0
        self._answered = False  # a query has succeeded: an unreadable body now means "cut off"

    def __repr__(self) -> str:
        return f"PrometheusMetrics(url={redact_url(self.url)!r}, templates={self.templates.name!r})"

    @property
    def bounds(self) -> tuple[float, ...]:
        """Finite latency bucket bounds (ms) seen so far; () before any histogram was read.

        Pass them to :class:`~meshlab.metrics.bracket.BracketedComparison`.
        """
        return tuple(b for b in self._bounds or () if math.isfinite(b))

    @property
    def queries(self) -> Mapping[str, tuple[str, str]]:
        """The rendered (requests, latency) queries per arm, for the report."""
        return dict(self._queries)

    # -- I/O ----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        token = load_token(self._token_env, self._token_file, self._environ)
        return {"Authorization": f"Bearer {token.reveal()}"} if token else {}

    def _query(self, what: str, query: str, at: float, deadline: float) -> list[dict[str, Any]]:
        """One instant query; a failure leaves as one classified MetricsError.

        Raised outside the ``except`` block, so no cause is chained: the requests exception may
        carry the request's Authorization header.
        """
        where = redact_url(self.url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RetryableMetricsError(
                f"Prometheus at {where} did not answer this look's queries within the query "
                f"timeout ({self._timeout:g}s, spec.metrics.prometheus.queryTimeout); holding"
            )
        self._client.headers = self._headers()
        error: MetricsError | None = None
        try:
            result = self._client.custom_query(
                query,
                params={"time": f"{at:.3f}"},
                timeout=remaining,  # type: ignore[arg-type]  # requests accepts float seconds
            )
            if not isinstance(result, list):
                raise TypeError("result is not a list")
        except (
            requests.RequestException,
            PrometheusApiClientException,
            ValueError,
            KeyError,
            TypeError,
            IndexError,
        ) as exc:
            error = classify(exc, where, what, self._timeout, self._answered)
        finally:
            self._client.headers = {}
        if error is not None:
            raise error
        self._answered = True
        return list(result)

    def check(self) -> None:
        """Run one trivial query: None if Prometheus answers, else the classified error.

        Use it before a run instead of :meth:`online` to tell the user *why* (a 401 says "check
        the token", a refused connection says unreachable).
        """
        self._query("health", "vector(1)", self._clock(), time.monotonic() + self._timeout)

    def online(self) -> bool:
        try:
            self.check()
        except (MetricsError, ConfigError):
            return False
        return True

    def close(self) -> None:
        self._client.close()

    # -- deltas -------------------------------------------------------------------------------

    def _deltas(self, arm: str, kind: str, series: list[dict[str, Any]]) -> dict[SeriesKey, float]:
        last = self._last[arm][kind]
        out: dict[SeriesKey, float] = {}
        for item in series:
            labels = item.get("metric", {})
            key: SeriesKey = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            out[key] = counter_delta(last.get(key), value)
            last[key] = value
        return out

    def _arm_window(
        self, arm: str, requests_series: list[dict[str, Any]], latency_series: list[dict[str, Any]]
    ) -> ArmWindow:
        status_label = self.templates.status_label
        counts: dict[int, int] = {}
        for key, delta in self._deltas(arm, "requests", requests_series).items():
            labels = dict(key)
            code_text = labels.get(status_label, "0")
            code = int(code_text) if code_text.isdigit() else 0
            counts[code] = counts.get(code, 0) + round(delta)
        cumulative: dict[float, float] = {}
        for key, delta in self._deltas(arm, "latency", latency_series).items():
            le = dict(key).get("le")
            if le is None:
                continue
            bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
            cumulative[bound] = cumulative.get(bound, 0.0) + delta
        buckets = Buckets.from_cumulative(cumulative) if math.inf in cumulative else None
        return ArmWindow(arm, {c: n for c, n in counts.items() if n > 0}, buckets)

    def fetch(self) -> Window:
        """Pseudo-samples of the requests each arm served since the previous call."""
        at = self._clock()
        deadline = time.monotonic() + self._timeout  # the whole look, not each query
        raw = {
            arm: (
                self._query(f"{arm} requests", q[0], at, deadline),
                self._query(f"{arm} latency", q[1], at, deadline),
            )
            for arm, q in self._queries.items()
        }
        windows = {arm: self._arm_window(arm, *series) for arm, series in raw.items()}
        start, self._started_at = self._started_at, at
        if start is None:
            return Window(at, at, empty_samples())
        return self._window(start, at, windows)

    def _window(self, start: float, end: float, windows: Mapping[str, ArmWindow]) -> Window:
        columns: list[tuple[int, Any, Any, Any]] = []
        totals: dict[str, ArmTotals] = {}
        used: list[ArmWindow] = []
        for arm in self.arms:
            arm_index = ALL_ARMS.index(arm)
            window = self._with_pending(windows[arm])
            if window is None:
                continue
            used.append(window)
            observed = window.latency.total if window.latency else 0
            totals[arm] = ArmTotals(window.requests, window.errors, observed)
            ts, lat, status = window_columns(window, start, end)
            columns.append((arm_index, ts, lat, status))
        if not columns or all(c[1].size == 0 for c in columns):
            return Window(start, end, empty_samples(), totals, describe(used), self.bounds)
        ts = np.concatenate([c[1] for c in columns])
        order = np.argsort(ts, kind="stable")
        arm_col = np.concatenate([np.full(c[1].size, c[0], dtype=np.int8) for c in columns])
        n = int(ts.size)
        ids = np.array([f"prom-{self._seq + i}" for i in range(n)], dtype=np.str_)
        self._seq += n
        samples = Samples(
            ts[order],
            arm_col[order],
            ids,
            np.concatenate([c[2] for c in columns])[order],
            np.concatenate([c[3] for c in columns])[order],
            np.full(n, None, dtype=object),
            np.isin(arm_col, self._mirrored)[order],
        )
        return Window(start, end, samples, totals, describe(used), self.bounds)

    def _with_pending(self, window: ArmWindow) -> ArmWindow | None:
        """Requests counted before their latencies reached the histogram wait one window.

        Envoy flushes histograms on an interval while its counters are live, so a window can count
        requests whose latencies only arrive in the next one. Such requests are carried over once;
        if the histogram still shows nothing (requests that never reached an upstream, e.g. a
        dead arm), they are placed at the slowest finite bucket bound, a conservative choice.
        """
        arm = window.arm
        counts = dict(self._carried.pop(arm, {}))
        carried = bool(counts)
        for code, count in window.status_counts.items():
            counts[code] = counts.get(code, 0) + count
        if window.latency is not None:
            self._bounds = window.latency.bounds
        n = sum(counts.values())
        if n == 0 or (window.latency is not None and window.latency.total > 0):
            return ArmWindow(arm, counts, window.latency)
        if not carried or self._bounds is None:
            self._carried[arm] = counts
            return None
        bounds = self._bounds
        return ArmWindow(arm, counts, Buckets(bounds, (0,) * (len(bounds) - 1) + (n,)))

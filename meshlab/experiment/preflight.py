"""Pre-flight: before step 1 routes anything to the candidate, every version answers real payloads.

A candidate served under another model name, a ``protocol: v1`` load against a V2-only server, an
extractor that points nowhere, or a candidate ``url`` with nothing listening would otherwise run a
whole experiment and end in a verdict about the wrong thing (a 404 candidate was once promoted:
its fast 404s looked like better latency). So, after the mesh is up with all traffic on the
baseline, each version (the control too, with ``spec.control``) gets a few of the load's own payloads

1. **directly** (the model server's own URL; local mesh only),
2. **through the mesh**: through its sidecar Envoy (local mesh), and for the baseline through the
   outbound route the load generator uses (the only route that exists before step 1; with a
   Kubernetes target the ``--url`` is the only probe: meshlab has no direct address of either
   version there, so the candidate is first seen at step 1, by the statistics).

Every answer must be 2xx/3xx or listed in ``spec.analysis.expectedStatuses`` and, when a
prediction-divergence metric is configured, yield a prediction through ``spec.load.extractor``.
A 5xx answer is retried a few times (a flaky candidate is the statistics' business, a dead one is
not); a status 0 (no answer) is not. The first failure stops the run with one line quoting the
answer, e.g. ``candidate: POST /v2/models/breast-cancer/infer -> 404 {"error":...}``:

* :class:`PreflightConfigError` (exit 2) for what the spec can fix: a 4xx (model name, path,
  protocol, payloads), or an answer the extractor finds no prediction in;
* :class:`PreflightUnreachable` (exit 4) for what it cannot: nothing answers, Envoy finds no
  healthy upstream, or every attempt answers 5xx.

``meshlab <strategy> start --skip-preflight`` skips it (for experts whose model needs warm-up
traffic first). The answers are kept in ``preflight.json`` of the run directory for the report.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshlab.errors import ConfigError, MeshError
from meshlab.load.config import LocustConfig
from meshlab.load.inputs import encoded_bodies
from meshlab.load.payloads import make_extractor
from meshlab.mesh import MeshBackend
from meshlab.report.record import write_atomic
from meshlab.report.result import PREFLIGHT, ProbeAnswer, preflight_to_json
from meshlab.samples import is_error_status
from meshlab.spec import Experiment

ARM_HEADER = "x-meshlab-arm"
ARMS = ("baseline", "candidate", "control")  # the control only in a run with spec.control
PAYLOADS = 3  # distinct payloads per version and path
ATTEMPTS = 3  # tries of one payload while it answers 5xx
QUOTE = 160  # characters of an answer's body quoted in the error line
_UNREACHABLE_MARKERS = ("no healthy upstream", "upstream connect error", "connection refused")


class PreflightConfigError(ConfigError):
    """A version answered in a way the spec can fix (model name, path, protocol, extractor)."""


class PreflightUnreachable(MeshError):
    """A version cannot be reached or only fails; the spec cannot fix it (exit 4)."""


@dataclass(frozen=True)
class Endpoint:
    """Where one probe goes: the version (arm), which path ("direct", "sidecar", "mesh"), the URL."""

    arm: str
    via: str
    url: str
    check_arm: bool = False  # the answer must name this arm (the local mesh, whose routes we own)


Send = Callable[[str, bytes, dict[str, str], float], tuple[int, dict[str, str], bytes]]


def http_post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body``; (status, lower-cased headers, body). Status 0 = no HTTP answer at all."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), _lower(exc.headers.items()), exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, {}, f"no answer ({reason})".encode()


def _lower(items: Sequence[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def endpoints(mesh: MeshBackend, target_url: str) -> list[Endpoint]:
    """Directly first, then through the mesh; baseline, candidate, control at each level."""
    out: list[Endpoint] = []
    model_urls: dict[str, str] = getattr(mesh, "model_urls", {})
    sidecars: dict[str, object] = getattr(mesh, "sidecars", {})
    for arm in ARMS:
        if arm in model_urls:
            out.append(Endpoint(arm, "direct", model_urls[arm]))
    for arm in ARMS:
        ports: dict[str, int] = getattr(sidecars.get(arm), "listener_ports", {})
        if "inbound" in ports:
            out.append(Endpoint(arm, "sidecar", f"http://127.0.0.1:{ports['inbound']}"))
    # Before step 1 the local mesh routes everything to the baseline; a cluster's --url may be any
    # address (a gateway, a Service), so only the local mesh's answer must say "baseline".
    out.append(Endpoint("baseline", "mesh", target_url.rstrip("/"), check_arm=bool(model_urls)))
    return out


def _quote(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text if len(text) <= QUOTE else text[: QUOTE - 3] + "..."


def _line(answer: ProbeAnswer) -> str:
    shown = f"{answer.status} {answer.body}" if answer.status else answer.body
    return f"{answer.arm}: POST {answer.path} -> {shown} ({answer.via}, {answer.url})"


def _fix_for_status(status: int, config: LocustConfig) -> str:
    if status == 404:
        return (
            f"nothing is served at {config.path}: check spec.load.model ({config.model!r}), "
            f"spec.load.path and spec.load.protocol ({config.protocol})"
        )
    if status in (401, 403):
        return "the server refused the request: give its credentials in spec.load.headers"
    return (
        "the server rejected the payload: check spec.load.payloads, inputName and protocol, or "
        "list the status in spec.analysis.expectedStatuses if these payloads are meant to get it"
    )


def check_before_routing(
    experiment: Experiment,
    mesh: MeshBackend,
    config: LocustConfig,
    target_url: str,
    run_dir: Path | None = None,
    *,
    send: Send = http_post,
    payloads: int = PAYLOADS,
    attempts: int = ATTEMPTS,
    retry_pause: float = 0.2,
) -> list[ProbeAnswer]:
    """Probe every version as the module docstring says; raise on the first bad answer.

    Returns every answer (also written to ``run_dir/preflight.json`` when given).
    """
    expected = experiment.spec.analysis.expected_statuses
    wants_prediction = any(
        m.type == "prediction-divergence" for m in experiment.spec.analysis.metrics
    )
    bodies = encoded_bodies(config)[:payloads]  # the load's own bodies, checked the same way
    extract = make_extractor(config.extractor, cache_size=0)
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        **config.headers,
        **(config.variants[0][1] if config.variants else {}),
    }
    answers: list[ProbeAnswer] = []
    try:
        for endpoint in endpoints(mesh, target_url):
            for i, body in enumerate(bodies):
                answer = _probe(endpoint, config, body, headers, send, attempts, retry_pause, i)
                answer = ProbeAnswer(
                    answer.arm,
                    answer.via,
                    answer.url,
                    answer.path,
                    answer.status,
                    answer.body,
                    extract(answer.raw) if answer.status else "",
                    answer.served_by,
                    answer.attempts,
                )
                answers.append(answer)
                _judge(answer, config, expected, wants_prediction, endpoint.check_arm)
    finally:
        if run_dir is not None:
            write_atomic(run_dir / PREFLIGHT, json.dumps(preflight_to_json(answers), indent=2))
    return answers


def _probe(
    endpoint: Endpoint,
    config: LocustConfig,
    body: bytes,
    headers: dict[str, str],
    send: Send,
    attempts: int,
    pause: float,
    index: int,
) -> ProbeAnswer:
    status, raw = 0, b""
    got: dict[str, str] = {}
    tries = 0
    for tries in range(1, attempts + 1):
        sent = {**headers, "x-request-id": f"meshlab-preflight-{endpoint.via}-{index}-{tries}"}
        status, got, raw = send(endpoint.url + config.path, body, sent, config.timeout)
        if status == 0 or status < 500:
            break
        time.sleep(pause)
    return ProbeAnswer(
        endpoint.arm,
        endpoint.via,
        endpoint.url,
        config.path,
        status,
        _quote(raw),
        "",
        got.get(ARM_HEADER, ""),
        tries,
        raw=raw,
    )


def _spec_field(arm: str) -> str:
    """Where the spec says how to start or reach ``arm`` (the control: its url, or the baseline's
    command it is started from)."""
    return "spec.control.url or spec.local.baseline" if arm == "control" else f"spec.local.{arm}"


def _judge(
    answer: ProbeAnswer,
    config: LocustConfig,
    expected: Sequence[int],
    wants_prediction: bool,
    check_arm: bool = False,
) -> None:
    line = _line(answer)
    status = answer.status
    if status == 0 or (
        status >= 500 and any(m in answer.body.lower() for m in _UNREACHABLE_MARKERS)
    ):
        where = (
            _spec_field(answer.arm)
            if answer.via in ("direct", "sidecar")
            else "the load target (--url)"
        )
        raise PreflightUnreachable(
            f"pre-flight: {line}; nothing answers there: start the server or fix {where}"
        )
    if is_error_status(status, expected):
        if status >= 500:
            raise PreflightUnreachable(
                f"pre-flight: {line}; it answered {status} {answer.attempts} times in a row, "
                "so it cannot be compared (see its log)"
            )
        raise PreflightConfigError(f"pre-flight: {line}; {_fix_for_status(status, config)}")
    if check_arm and answer.served_by not in ("", answer.arm):
        raise PreflightUnreachable(
            f"pre-flight: {line}; served by {answer.served_by!r} while all traffic should be on "
            "the baseline"
        )
    if wants_prediction and 200 <= status < 300 and not answer.prediction:
        raise PreflightConfigError(
            f"pre-flight: {line}; spec.load.extractor {config.extractor!r} found no prediction "
            "in this answer: point it at the prediction (e.g. outputs[0].data[0] for V2)"
        )

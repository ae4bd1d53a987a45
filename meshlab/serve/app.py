"""The HTTP edge of ``meshlab serve`` (Starlette on uvicorn): routes, status codes, auth, logs.

Routes::

    GET|POST /argo/v1/measure            Argo Rollouts web metric (see meshlab.serve.argo)
    POST     /flagger/v1/{hook}          Flagger webhooks (see meshlab.serve.flagger)
    GET      /sessions                   every stored session and its verdict
    GET      /healthz                    liveness

Bad arguments answer 400 with ``{"error": "<field>: <what to fix>"}``; an unreachable Prometheus
answers 503 to Argo (a measurement *Error*, never a failure) and per hook to Flagger. When started
with ``--auth-token-env``, callers must send ``Authorization: Bearer <token>`` (Flagger, which
cannot set headers, may put it in ``metadata.token``). Logs carry the session key, the verdict and
the request counts; never a token, a header or a Prometheus URL's credentials.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from meshlab.errors import ConfigError, MetricsError
from meshlab.metrics import Secret
from meshlab.serve import argo, flagger
from meshlab.serve.judge import Judge, LookRequest
from meshlab.serve.sessions import StateError

log = logging.getLogger("meshlab.serve")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _auth_token(env_name: str | None) -> Secret | None:
    if not env_name:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise ConfigError(f"--auth-token-env: environment variable {env_name} is not set or empty")
    return Secret(value)


def _authorized(expected: Secret | None, header: str | None, token: str | None) -> bool:
    if expected is None:
        return True
    given = token or ""
    if header and header.lower().startswith("bearer "):
        given = header[7:].strip()
    return hmac.compare_digest(given.encode(), expected.reveal().encode())


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"body: not valid JSON ({exc.msg} at {exc.pos})") from None


def _log(look: LookRequest, answer: Mapping[str, Any], via: str) -> None:
    key = look.key
    log.info(
        "%s %s/%s@%s look %s: %s (requests baseline %s, candidate %s)",
        via, key.namespace, key.name, key.revision, answer.get("session", {}).get("look"),
        answer.get("verdict"), answer.get("requests", {}).get("baseline"),
        answer.get("requests", {}).get("candidate"),
    )  # fmt: skip


def create_app(judge: Judge) -> Starlette:
    """The Starlette application answering for ``judge``."""
    expected = _auth_token(judge.settings.auth_token_env)

    async def measure(request: Request) -> Response:
        if not _authorized(expected, request.headers.get("authorization"), None):
            return _error(401, "authorization: send 'Authorization: Bearer <token>'")
        try:
            args: Any = dict(request.query_params)
            if request.method in ("POST", "PUT"):
                body = await _json_body(request)
                if not isinstance(body, dict):
                    raise ConfigError("body: the measurement arguments are a JSON object")
                args = {**args, **body}
            look = argo.look_request(args, judge.settings)
            answer = await run_in_threadpool(judge.look, look)
        except ConfigError as exc:
            return _error(400, str(exc))
        except (MetricsError, StateError) as exc:
            return _error(503, str(exc))
        _log(look, answer, "argo")
        return JSONResponse(answer)

    async def webhook(request: Request) -> Response:
        try:
            hook = flagger.hook_name(request.path_params["hook"])
            payload = await _json_body(request)
            meta = payload.get("metadata") if isinstance(payload, dict) else None
            token = meta.get("token") if isinstance(meta, dict) else None
            if not _authorized(expected, request.headers.get("authorization"), token):
                return _error(401, "authorization: send a bearer token or metadata.token")
            look = flagger.look_request(payload, judge.settings)
        except ConfigError as exc:
            return _error(400, str(exc))
        try:
            answer = await run_in_threadpool(judge.look, look)
        except ConfigError as exc:
            return _error(400, str(exc))
        except (MetricsError, StateError) as exc:
            status = flagger.status_when_unavailable(hook)
            return JSONResponse({"verdict": "inconclusive", "error": str(exc)}, status_code=status)
        _log(look, answer, f"flagger {hook}")
        return JSONResponse(answer, status_code=flagger.status_for(hook, str(answer["verdict"])))

    async def sessions(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(judge.sessions))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            judge.close()

    return Starlette(
        routes=[
            Route("/argo/v1/measure", measure, methods=["GET", "POST", "PUT"]),
            Route("/flagger/v1/{hook}", webhook, methods=["POST"]),
            Route("/sessions", sessions, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def run(judge: Judge, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both and drains in-flight looks)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(create_app(judge), host=host, port=port, log_level="info", access_log=False)

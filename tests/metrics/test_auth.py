"""Bearer token from env or file, TLS verified by default, secrets never in reprs, logs or errors.

Prometheus itself has no bearer-token auth (that sits in a proxy in front of it), so a loopback
stand-in for the query API checks the Authorization header; TLS uses a throwaway self-signed CA.
"""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from meshlab.errors import ConfigError, PermanentMetricsError
from meshlab.metrics import ENVOY, PrometheusMetrics, Secret, load_token
from tests.metrics.conftest import CLUSTERS

TOKEN = "s3cr3t-token-value"
ARMS = {arm: {"arm": c} for arm, c in CLUSTERS.items()}


class AuthProxy(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        if auth != f"Bearer {TOKEN}":
            body, status = b'{"status":"error","error":"unauthorized"}', 401
        else:
            body = json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": []}}
            ).encode()
            status = 200
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _start(context: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthProxy)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxy() -> Iterator[str]:
    AuthProxy.seen = []
    server = _start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls_proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    AuthProxy.seen = []
    server = _start(context)
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_token_from_env_is_sent_as_bearer(proxy: str) -> None:
    backend = PrometheusMetrics(
        proxy, ENVOY, ARMS, token_env="PROM_TOKEN", environ={"PROM_TOKEN": TOKEN}
    )
    try:
        assert backend.fetch().is_empty
        assert AuthProxy.seen and set(AuthProxy.seen) == {f"Bearer {TOKEN}"}
    finally:
        backend.close()


def test_token_file_is_reread_so_rotation_works(proxy: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    backend = PrometheusMetrics(proxy, ENVOY, ARMS, token_file=str(token_file))
    try:
        with pytest.raises(PermanentMetricsError, match=r"HTTP 401.*check the bearer token"):
            backend.fetch()
        token_file.write_text(TOKEN + "\n")
        assert backend.fetch().is_empty
        assert AuthProxy.seen[-1] == f"Bearer {TOKEN}"
    finally:
        backend.close()


def test_secrets_never_appear_in_reprs_logs_or_errors(
    proxy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host_port = proxy.removeprefix("http://")
    url = f"http://admin:hunter2pass@{host_port}"
    backend = PrometheusMetrics(url, ENVOY, ARMS, token_env="T", environ={"T": "wrong-" + TOKEN})
    try:
        with pytest.raises(PermanentMetricsError) as info:
            backend.fetch()
        texts = [str(info.value), repr(info.value), repr(backend), caplog.text]
        for text in texts:
            assert TOKEN not in text and "hunter2pass" not in text
        assert repr(Secret(TOKEN)) == "Secret('***')" and TOKEN not in str(Secret(TOKEN))
        assert info.value.__cause__ is None  # no chained exception carrying the raw response
    finally:
        backend.close()


def test_missing_token_sources_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tokenEnv: environment variable NOPE is not set"):
        load_token("NOPE", None, {})
    with pytest.raises(ConfigError, match=r"tokenFile: cannot read"):
        load_token(None, str(tmp_path / "absent"), {})
    assert load_token(None, None, {}) is None


def test_tls_is_verified_by_default(tls_proxy: tuple[str, Path]) -> None:
    url, cert = tls_proxy
    env = {"T": TOKEN}
    strict = PrometheusMetrics(url, ENVOY, ARMS, token_env="T", environ=env)
    try:
        with pytest.raises(PermanentMetricsError, match="TLS verification failed"):
            strict.fetch()
        assert AuthProxy.seen == []  # the token never left over an unverified connection
    finally:
        strict.close()
    trusted = PrometheusMetrics(url, ENVOY, ARMS, token_env="T", environ=env, ca_file=str(cert))
    try:
        assert trusted.fetch().is_empty
        assert AuthProxy.seen[-1] == f"Bearer {TOKEN}"
    finally:
        trusted.close()
    insecure = PrometheusMetrics(url, ENVOY, ARMS, token_env="T", environ=env, verify_tls=False)
    try:
        with pytest.warns(Warning):  # urllib3 warns about unverified HTTPS, as it should
            assert insecure.fetch().is_empty
    finally:
        insecure.close()

"""The collector is safe to expose: token, mTLS, deadlines, body and connection bounds, safe JSON.

Everything runs on loopback against the real listener (asyncio + h11) with real clients (httpx,
raw sockets, openssl-generated certificates); nothing is faked.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloudevents.core.bindings.http import to_binary_event

from meshlab.collector import (
    REQUEST_TYPE,
    Collector,
    Joiner,
    Limits,
    Token,
    auth_from_spec,
    collector_from_spec,
    load_token,
)
from meshlab.errors import ConfigError
from meshlab.spec.metrics import CollectorSpec, CollectorTls
from tests.collector.test_collector import T0, kserve_event

TOKEN = "s3cret-token-value"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def guarded() -> Iterator[Collector]:
    with Collector(Joiner(release="pairs"), token=Token(TOKEN)) as running:
        yield running


def record(rid: str, prediction: object = 1) -> dict[str, object]:
    return {"requestId": rid, "prediction": prediction, "latencyMs": 1.0, "time": 1.7e9}


# -- token ------------------------------------------------------------------------------------


def test_events_need_the_bearer_token_and_health_does_not(guarded: Collector) -> None:
    url = guarded.url + "/events/baseline"
    missing = httpx.post(url, json=record("r"), timeout=5)
    wrong = httpx.post(url, json=record("r"), headers={"authorization": "Bearer nope"}, timeout=5)
    basic = httpx.post(url, json=record("r"), auth=("meshlab", TOKEN), timeout=5)
    assert [missing.status_code, wrong.status_code, basic.status_code] == [401, 401, 401]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in missing.text + wrong.text + basic.text
    ok = httpx.post(url, json=record("r"), headers=AUTH, timeout=5)
    assert ok.status_code == 200, ok.text
    assert httpx.get(guarded.url + "/healthz", timeout=5).text == "ok\n"
    assert guarded.rejections().nonzero() == {"missing_token": 1, "invalid_token": 2}
    assert guarded.joiner.stats.records == 1


def test_unauthenticated_bodies_are_never_read(guarded: Collector) -> None:
    """A 401 goes out on the headers alone: the client never gets to send its 64 MiB."""
    host, port = guarded.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /events/baseline HTTP/1.1\r\nhost: x\r\ncontent-length: 67108864\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401")


def test_token_is_loaded_from_env_or_file_and_never_printed(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    from_file = load_token(None, str(file))
    from_env = load_token("COLLECTOR_TOKEN", str(file), {"COLLECTOR_TOKEN": TOKEN})
    assert from_file is not None and from_env is not None
    assert from_file.matches(f"Bearer {TOKEN}".encode())
    assert from_file.matches(f"bearer  {TOKEN}".encode())  # the scheme is case-insensitive
    for wrong in (TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer "):
        assert not from_file.matches(wrong.encode())
    assert TOKEN not in repr(from_file) + str(from_env)
    with pytest.raises(ConfigError, match=r"collector\.tokenEnv: environment variable NOPE"):
        load_token("NOPE", None, {})
    with pytest.raises(ConfigError, match=r"collector\.tokenFile: cannot read"):
        load_token(None, str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_token(None, str(tmp_path / "empty"))


def test_binds_loopback_by_default_and_refuses_to_listen_beyond_it_without_a_token() -> None:
    spec = CollectorSpec()
    assert spec.listen == "127.0.0.1"
    with pytest.raises(ConfigError, match=r"collector\.listen: 0\.0\.0\.0 is beyond loopback"):
        Collector(host="0.0.0.0")
    # The spec refuses it too, before anything runs (tokenEnv named, value checked at start).
    with pytest.raises(ValueError, match="beyond loopback, so a bearer token is required"):
        CollectorSpec.model_validate({"listen": "10.0.0.7"})
    exposed = CollectorSpec.model_validate({"listen": "0.0.0.0", "tokenEnv": "T"})
    with pytest.raises(ConfigError, match="environment variable T is not set"):
        collector_from_spec(exposed, environ={})
    token, context = auth_from_spec(exposed, {"T": TOKEN})
    assert token is not None and context is None
    # Constructed (not started: tests never listen beyond loopback) with a token it is accepted.
    Collector(host="0.0.0.0", token=token)


def test_standalone_collector_refuses_an_exposed_listener_with_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshlab.collector", "--listen", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "spec.metrics.collector" in lines[0] and "tokenEnv or tokenFile" in lines[0]


# -- mTLS -------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _key_and_csr(directory: Path, name: str, cn: str) -> tuple[Path, Path]:
    key, csr = directory / f"{name}.key", directory / f"{name}.csr"
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}",
    )  # fmt: skip
    return key, csr


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    files: dict[str, Path] = {}
    for ca in ("ca", "rogue-ca"):
        files[f"{ca}.key"], files[f"{ca}.pem"] = d / f"{ca}.key", d / f"{ca}.pem"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "1", "-keyout", str(files[f"{ca}.key"]), "-out", str(files[f"{ca}.pem"]),
            "-subj", f"/CN={ca}",
        )  # fmt: skip
    for name, ca, ext in (
        ("server", "ca", "subjectAltName=IP:127.0.0.1"),
        ("client", "ca", "extendedKeyUsage=clientAuth"),
        ("rogue", "rogue-ca", "extendedKeyUsage=clientAuth"),
    ):
        key, csr = _key_and_csr(d, name, name)
        extfile = d / f"{name}.ext"
        extfile.write_text(ext + "\n")
        files[f"{name}.key"], files[f"{name}.pem"] = key, d / f"{name}.pem"
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(files[f"{ca}.pem"]),
            "-CAkey", str(files[f"{ca}.key"]), "-CAcreateserial", "-days", "1",
            "-out", str(files[f"{name}.pem"]), "-extfile", str(extfile),
        )  # fmt: skip
    return files


def test_mtls_admits_only_clients_with_a_certificate_from_the_client_ca(
    pki: dict[str, Path],
) -> None:
    spec = CollectorSpec.model_validate(
        {
            "port": 0,
            "tokenEnv": "T",
            "release": "pairs",
            "tls": {
                "certFile": str(pki["server.pem"]),
                "keyFile": str(pki["server.key"]),
                "clientCaFile": str(pki["ca.pem"]),
            },
        }
    )
    with collector_from_spec(spec, environ={"T": TOKEN}) as collector:
        assert collector.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        good = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        good.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
        rogue = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        rogue.load_cert_chain(str(pki["rogue.pem"]), str(pki["rogue.key"]))
        url = collector.url + "/events/baseline"
        ok = httpx.post(url, json=record("r"), headers=AUTH, verify=good, timeout=5)
        assert ok.status_code == 200, ok.text
        for context in (trust, rogue):  # no client certificate; one from another CA
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                httpx.post(url, json=record("r"), headers=AUTH, verify=context, timeout=5)
        with pytest.raises(httpx.HTTPError):  # plain HTTP to a TLS port
            httpx.post(url.replace("https", "http"), json=record("r"), timeout=5)
        # The token is still checked inside the tunnel.
        no_token = httpx.post(url, json=record("r"), verify=good, timeout=5)
        assert no_token.status_code == 401
        deadline = time.monotonic() + 5
        while collector.rejections().tls_handshake_failed < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.rejections().nonzero() == {"tls_handshake_failed": 3, "missing_token": 1}
        assert collector.joiner.stats.records == 1


def test_bad_tls_files_name_the_field(tmp_path: Path) -> None:
    tls = CollectorTls(cert_file=str(tmp_path / "nope.pem"), key_file=str(tmp_path / "nope.key"))
    spec = CollectorSpec(tls=tls, port=0)
    with pytest.raises(ConfigError, match=r"collector\.tls\.certFile/keyFile: cannot load"):
        collector_from_spec(spec)


# -- deadlines, sizes, connections --------------------------------------------------------------


def _address(collector: Collector) -> tuple[str, int]:
    host, port = collector.url.removeprefix("http://").split(":")
    return host, int(port)


def test_the_deadline_is_for_the_whole_request_not_per_read() -> None:
    """A client sending a byte every 0.1 s is cut at the 1 s deadline, although no read waits 1 s."""
    limits = Limits(request_timeout=1.0)
    with Collector(Joiner(), limits=limits) as collector:
        request = b"POST /events/baseline HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n"
        started = time.monotonic()
        answer = b""
        with socket.create_connection(_address(collector), timeout=5) as sock:
            try:
                for byte in request:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                pass  # the server closed on us mid-send: that is the point
            try:
                answer = sock.recv(4096)
            except OSError:
                answer = b""
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 1.5  # 6.6 s if every byte were allowed its own timeout
        assert answer.startswith(b"HTTP/1.1 408") or answer == b""
        assert collector.rejections().deadline_exceeded == 1
        # A connection that never sends a byte is cut and counted too...
        with socket.create_connection(_address(collector), timeout=5) as silent:
            assert silent.recv(4096).startswith(b"HTTP/1.1 408")
        assert collector.rejections().deadline_exceeded == 2
        # ...but a keep-alive connection idle after an answer is closed quietly.
        with socket.create_connection(_address(collector), timeout=5) as reused:
            reused.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok\n"):
                answer += reused.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert reused.recv(4096) == b""
            assert time.monotonic() - started < 1.0 + 1.5
        assert collector.rejections().nonzero() == {"deadline_exceeded": 2}


def test_bodies_above_max_body_are_refused_on_the_header() -> None:
    with Collector(Joiner(), max_body=1024) as collector:
        with socket.create_connection(_address(collector), timeout=5) as sock:
            sock.sendall(
                b"POST /events/baseline HTTP/1.1\r\nhost: x\r\ncontent-length: 4096\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        assert collector.rejections().nonzero() == {"body_too_large": 1}


def test_connections_above_the_cap_get_503_and_the_rest_keep_working() -> None:
    with Collector(Joiner(), limits=Limits(max_connections=4, request_timeout=5)) as collector:
        held = [socket.create_connection(_address(collector), timeout=5) for _ in range(4)]
        try:
            time.sleep(0.2)
            with socket.create_connection(_address(collector), timeout=5) as extra:
                assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert httpx.post(
            collector.url + "/events/baseline", json=record("r"), timeout=5
        ).is_success
        assert collector.rejections().nonzero() == {"too_many_connections": 1}


def test_a_binary_request_half_is_drained_unread_so_large_model_inputs_still_pair() -> None:
    """KServe logs the model input too; it may exceed maxBody but carries no prediction."""
    with Collector(Joiner(release="pairs"), max_body=4096) as collector:
        big_input = {"instances": [[0.5] * 5000]}  # ~25 KiB, above maxBody
        with httpx.Client(base_url=collector.url, timeout=5) as client:
            for arm, prediction in (("baseline", 0.1), ("candidate", 0.9)):
                for kind, data in (
                    ("request", big_input),
                    ("response", {"predictions": [prediction]}),
                ):
                    message = to_binary_event(
                        kserve_event(kind, f"ce-{arm}", "r-1", data, service=arm, at=T0)
                    )
                    assert (message.headers.get("ce-type") == REQUEST_TYPE) == (kind == "request")
                    answer = client.post(
                        f"/events/{arm}", headers=message.headers, content=message.body
                    )
                    assert answer.status_code == 200, answer.text
        assert sorted(collector.take().prediction.tolist()) == [0.1, 0.9]


# -- JSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"requestId": "r", "prediction": NaN}', "non_finite_number"),
        (b'{"requestId": "r", "prediction": Infinity}', "non_finite_number"),
        (b'{"requestId": "r", "prediction": -Infinity}', "non_finite_number"),
        (b'{"requestId": "r", "time": 1e400}', "non_finite_number"),
        (b'{"requestId": "r", "latencyMs": -1e999}', "non_finite_number"),
        (b'{"requestId": "r", "prediction": 1' + b"0" * 5000 + b"}", "non_finite_number"),
        (b"[" * 200_000, "json_too_deep"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "json_too_deep"),
        (b'{"requestId": "r", "prediction": ' + b"[" * 65 + b"]" * 65 + b"}", "json_too_deep"),
        (b'{"requestId": "r", "prediction": "\xff"}', "bad_json"),
        (b"{'requestId': 'r'}", "bad_json"),
        (b'{"requestId": "' + b"x" * 300 + b'"}', "bad_event"),
    ],
)
def test_json_depth_and_numbers_are_checked(guarded: Collector, body: bytes, reason: str) -> None:
    answer = httpx.post(
        guarded.url + "/events/baseline",
        content=body,
        headers={**AUTH, "content-type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text
    assert answer.text.count("\n") == 1
    assert guarded.rejections().nonzero() == {reason: 1}


def test_cloudevents_are_checked_before_the_sdk_sees_them(guarded: Collector) -> None:
    deep = b"[" * 100_000
    structured = json.dumps(
        {"id": "1", "type": REQUEST_TYPE, "source": "s", "specversion": "1.0", "data": 0}
    ).encode()
    cases = [
        ({"content-type": "application/cloudevents+json"}, deep, "json_too_deep"),
        (
            {"content-type": "application/cloudevents+json"},
            structured.replace(b'"data": 0', b'"data": NaN'),
            "non_finite_number",
        ),
        (
            {
                "ce-id": "1",
                "ce-type": "org.kubeflow.serving.inference.response",
                "ce-source": "s",
                "ce-specversion": "1.0",
                "content-type": "application/json",
            },
            deep,
            "json_too_deep",
        ),
    ]
    for headers, body, _ in cases:
        answer = httpx.post(
            guarded.url + "/events/baseline", content=body, headers={**AUTH, **headers}, timeout=10
        )
        assert answer.status_code == 400, answer.text
    assert guarded.rejections().nonzero() == {"json_too_deep": 2, "non_finite_number": 1}


def test_memory_budget_full_of_untaken_rows_answers_503() -> None:
    joiner = Joiner(release="mirrored", memory_budget=64 * 1024)
    with Collector(joiner) as collector, httpx.Client(base_url=collector.url, timeout=5) as client:
        answers = [
            client.post("/events/candidate", json=record(f"r{i}", "x" * 2000)).status_code
            for i in range(60)
        ]
        assert answers.count(200) > 10 and answers[-1] == 503
        assert collector.rejections().nonzero() == {"memory_budget": answers.count(503)}
        assert collector.joiner.held_bytes <= 64 * 1024
        collector.take()  # the run takes its rows: room again
        assert client.post("/events/candidate", json=record("late", 1)).status_code == 200

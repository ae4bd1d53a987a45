"""Who may post to the collector: the bearer token and the TLS/mTLS context.

The token comes from ``spec.metrics.collector.tokenEnv`` or ``tokenFile`` (the variable wins), is
held in a :class:`Token` whose ``repr`` hides it, and is compared with :func:`hmac.compare_digest`
(constant time in the length of the presented value), so timing does not leak it. A collector that
listens beyond loopback refuses to start without one. With ``tls.clientCaFile`` the TLS context
requires every client to present a certificate that CA signed (mTLS), before any byte of HTTP.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Mapping

from meshlab.errors import ConfigError
from meshlab.secrets import read_token
from meshlab.spec.metrics import CollectorSpec, CollectorTls, is_loopback

FIELD = "spec.metrics.collector"


class Token:
    """A bearer token; never printed."""

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("empty token")
        self._expected = value.encode()

    def matches(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization: Bearer <token>`` value carries this token (constant time).

        The scheme is case-insensitive (RFC 9110); the token is compared with
        :func:`hmac.compare_digest`, so the time taken does not depend on how much of it matches.
        """
        if authorization is None:
            return False
        scheme, _, presented = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(presented.strip(), self._expected)

    def authorization(self) -> str:
        """The ``Authorization`` header value a client sends (never log it)."""
        return f"Bearer {self._expected.decode()}"

    def __repr__(self) -> str:
        return "Token('***')"

    __str__ = __repr__


def load_token(
    token_env: str | None, token_file: str | None, environ: Mapping[str, str] | None = None
) -> Token | None:
    """The token named by the spec (``$token_env`` wins over ``token_file``), or None if neither.

    A variable or file that is named but missing/empty is a ConfigError naming the field.
    """
    value = read_token(FIELD, token_env, token_file, environ, what="the collector's bearer token")
    return None if value is None else Token(value)


def require_token_beyond_loopback(host: str, token: Token | None) -> None:
    """Refuse to serve an unauthenticated collector anywhere but loopback."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"{FIELD}.listen: {host} is beyond loopback and no bearer token is set; set "
            f"{FIELD}.tokenEnv or tokenFile, or listen on 127.0.0.1"
        )


def server_ssl_context(tls: CollectorTls) -> ssl.SSLContext:
    """A server context from the spec's files; client certificates required with a client CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{FIELD}.tls.certFile/keyFile: cannot load {tls.cert_file} and {tls.key_file} "
            f"({exc}); give a PEM certificate and its private key"
        ) from None
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{FIELD}.tls.clientCaFile: cannot load {tls.client_ca_file} ({exc}); give a PEM "
                "bundle of the CA that signs the clients' certificates"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def auth_from_spec(
    spec: CollectorSpec, environ: Mapping[str, str] | None = None
) -> tuple[Token | None, ssl.SSLContext | None]:
    """The token and TLS context ``spec`` asks for, refusing an unauthenticated exposed listener."""
    token = load_token(spec.token_env, spec.token_file, environ)
    require_token_beyond_loopback(spec.listen, token)
    return token, (server_ssl_context(spec.tls) if spec.tls else None)

"""The Kubernetes edge: load credentials, call the API for meshlab's kinds, translate its failures.

Every request meshlab makes to a Kubernetes API server goes through :class:`KubeObjects`: GET, POST,
server-side apply (``PATCH`` with ``application/apply-patch+yaml`` and a field manager), ``PUT`` with
a resourceVersion (optimistic concurrency) and DELETE of the kinds in :data:`RESOURCES` in one
namespace: Istio's ``networking.istio.io/v1`` objects and the Gateway API's HTTPRoute through the
custom-objects API, core ``v1`` Services through the core API. Each failure becomes a one-line
:class:`~meshlab.errors.MeshError` that says what to do
(403 -> apply ``istio_manifests/rbac/``, 404 on the resource type -> install the CRDs, 409 ->
:class:`~meshlab.errors.ConflictError`, timeouts -> ``target.requestTimeout``). Failures that may
heal by waiting are their own classes (:class:`KubeTimeoutError`; :class:`KubeUnavailableError` for
5xx, 429 and an unreachable server), which callers retry inside :meth:`IstioObjects.retrying`
(steps briefly, rollbacks until their deadline); 401/403/404/409/422 are never retried. Messages are built
from the API's ``Status`` (reason, message), never from request headers or the kubeconfig, so tokens
and client keys cannot leak into them.

The client is the official ``kubernetes`` package, pinned to 36.x (``>=36,<37`` in pyproject): this
module relies on the v36 generated client (``_content_type``/``_preload_content`` keyword arguments,
the ``BearerToken`` api-key slot, ``response_types_map`` that maps a 201 from a creating apply to
None, which is why answers are decoded here), and the next major version changes that generated API.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from meshlab.errors import ConflictError, MeshError
from meshlab.mesh.kube_resources import RESOURCES, Resource, resource_of

APPLY_PATCH = "application/apply-patch+yaml"

RBAC_FIX = "kubectl apply -n {ns} -f istio_manifests/rbac/"

log = logging.getLogger(__name__)


class KubeTimeoutError(MeshError):
    """A request timed out: the server may or may not have carried it out."""


class KubeUnavailableError(MeshError):
    """The API server is unreachable or answered 5xx/429: worth retrying within a deadline."""


# Failures that may heal by waiting; 401/403/404/409/422 never do.
TRANSIENT = (KubeTimeoutError, KubeUnavailableError)
MERGE_PATCH = "application/merge-patch+json"


def load_api_client(
    *, kubeconfig: str | None = None, context: str | None = None
) -> client.ApiClient:
    """An API client from the in-cluster ServiceAccount or a kubeconfig file and context.

    In-cluster config is used when running in a pod (``KUBERNETES_SERVICE_HOST`` set) and neither a
    kubeconfig nor a context was asked for; otherwise ``kubeconfig`` (default ``$KUBECONFIG`` or
    ``~/.kube/config``) with ``context`` (default: its current context).
    """
    configuration = client.Configuration()
    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, yaml.YAMLError, ValueError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        # ConfigException messages name keys and contexts, not credentials; keep only the first line.
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise MeshError(
            f"cannot load Kubernetes credentials from {where}"
            f"{f' (context {context!r})' if context else ''}: {reason}; "
            "fix target.kubeconfig/target.context or run `kubectl config get-contexts`"
        ) from exc
    # Retry connection setup, never a read: a PATCH that timed out may have been applied, and
    # meshlab checks what is in force instead of blindly sending it again.
    configuration.retries = urllib3.Retry(
        total=2, connect=2, read=0, status=0, redirect=0, backoff_factor=0.2
    )
    return client.ApiClient(configuration)


def server_address(api_client: client.ApiClient) -> str:
    """The API server's scheme://host:port, without any user:password part."""
    parts = urlsplit(str(api_client.configuration.host))
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


class KubeObjects:
    """meshlab's objects of one namespace (the kinds of :data:`RESOURCES`), read and written.

    Inside :meth:`retrying`, a request that fails with one of the given (transient) errors is sent
    again after a backoff (0.2 s, doubling, at most 2 s) until the block's deadline; each attempt
    still has ``timeout``. Every write is idempotent when repeated (server-side apply with force,
    merge patch, delete of a name, PUT with a resourceVersion that fails with 409 once applied).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        *,
        field_manager: str = "meshlab",
        dry_run: bool = False,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.field_manager = field_manager
        self.dry_run = dry_run
        self.timeout = timeout
        self.sleep = sleep
        self.attempts = 0  # requests sent, retries included (for logs and tests)
        self._retry_on: tuple[type[MeshError], ...] = ()
        self._retry_until = 0.0
        self._api = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self.kinds: dict[str, Resource] = dict(RESOURCES)

    def learn(self, manifests: list[dict[str, Any]]) -> None:
        """Address the kinds of ``manifests`` (a renderer's objects) where their apiVersion says."""
        for manifest in manifests:
            self.kinds[str(manifest["kind"])] = resource_of(manifest)

    def resource(self, kind: str) -> Resource:
        """Where this client reads and writes ``kind``."""
        try:
            return self.kinds[kind]
        except KeyError:
            raise MeshError(f"meshlab does not write {kind} objects") from None

    def _send(self, op: str, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """One call of the generated client: ``op`` is get, patch, replace or delete."""
        res = self.resource(kind)
        if not res.group:  # the core API: read_namespaced_service(name, namespace, ...)
            singular = kind.lower()
            verb = "read" if op == "get" else op
            method = getattr(self._core, f"{verb}_namespaced_{singular}")
            return method(name, self.namespace, *args, **kwargs)
        method = getattr(self._api, f"{op}_namespaced_custom_object")
        return method(res.group, res.version, self.namespace, res.plural, name, *args, **kwargs)

    @contextlib.contextmanager
    def retrying(self, errors: tuple[type[MeshError], ...], seconds: float) -> Iterator[None]:
        """Retry requests failing with ``errors`` until ``seconds`` from now (not re-entrant)."""
        previous = (self._retry_on, self._retry_until)
        self._retry_on, self._retry_until = errors, time.monotonic() + seconds
        try:
            yield
        finally:
            self._retry_on, self._retry_until = previous

    def _request(self, verb: str, kind: str, name: str, call: Callable[[], Any]) -> Any:
        """Send ``call`` (retrying transient failures inside :meth:`retrying`); map its errors."""
        delay = 0.2
        while True:
            self.attempts += 1
            try:
                try:
                    return call()
                except ApiException as exc:
                    raise self._error(exc, verb, kind, name) from exc
                except urllib3.exceptions.HTTPError as exc:
                    raise self._network_error(exc, verb, kind, name) from exc
            except self._retry_on as exc:
                if time.monotonic() + delay > self._retry_until:
                    raise
                log.warning("%s; trying again in %.1f s", exc, delay)
                self.sleep(delay)
                delay = min(2 * delay, 2.0)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object as stored, or None if it does not exist."""

        def call() -> Any:
            try:
                return self._send(
                    "get", kind, name, _request_timeout=self.timeout, _preload_content=False
                )
            except ApiException as exc:
                if exc.status == 404 and _names_object(exc):
                    return None
                raise

        result = self._request("get", kind, name, call)
        return None if result is None else _as_dict(result)

    def _write_kwargs(self) -> dict[str, Any]:
        """What every write sends: our field manager, strict validation, timeout, dry run."""
        kwargs: dict[str, Any] = {
            "field_manager": self.field_manager,
            "field_validation": "Strict",
            "_request_timeout": self.timeout,
            "_preload_content": False,
        }
        if self.dry_run:
            kwargs["dry_run"] = "All"
        return kwargs

    def apply(self, manifest: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply ``manifest`` as this field manager; returns the object as stored."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        kwargs = {**self._write_kwargs(), "force": force, "_content_type": APPLY_PATCH}
        return _as_dict(
            self._request(
                "apply",
                kind,
                name,
                lambda: self._send("patch", kind, name, manifest, **kwargs),
            )
        )

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """POST ``manifest``; fails with :class:`ConflictError` (409) if the name exists already."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        res, kwargs = self.resource(kind), self._write_kwargs()
        if not res.group:
            raise MeshError(f"meshlab does not create core {kind} objects by POST")

        def call() -> Any:
            return self._api.create_namespaced_custom_object(
                res.group, res.version, self.namespace, res.plural, manifest, **kwargs
            )

        return _as_dict(self._request("create", kind, name, call))

    def merge_patch(self, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch (RFC 7386) of the object, e.g. annotations only; null removes a key.

        A ``metadata.resourceVersion`` in ``patch`` makes it fail with 409 if the object changed.
        """
        kwargs = {**self._write_kwargs(), "_content_type": MERGE_PATCH}
        return _as_dict(
            self._request(
                "patch",
                kind,
                name,
                lambda: self._send("patch", kind, name, patch, **kwargs),
            )
        )

    def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """PUT ``manifest``; its ``metadata.resourceVersion`` makes a stale write fail with 409."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        kwargs = self._write_kwargs()
        return _as_dict(
            self._request(
                "update",
                kind,
                name,
                lambda: self._send("replace", kind, name, manifest, **kwargs),
            )
        )

    def delete(self, kind: str, name: str, *, resource_version: str | None = None) -> bool:
        """Delete the object (only at ``resource_version`` if given); False if it was already gone."""
        body: dict[str, Any] = {}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        kwargs: dict[str, Any] = {"body": body, "_request_timeout": self.timeout}
        if self.dry_run:
            kwargs["dry_run"] = "All"

        def call() -> bool:
            try:
                self._send("delete", kind, name, **kwargs)
            except ApiException as exc:
                if exc.status == 404 and _names_object(exc):
                    return False
                raise
            return True

        return bool(self._request("delete", kind, name, call))

    def _error(self, exc: ApiException, verb: str, kind: str, name: str) -> MeshError:
        status = _status(exc)
        what = f"{kind} {self.namespace}/{name}"
        res = self.resource(kind)
        qualified = res.qualified
        message = _one_line(str(status.get("message") or exc.reason or ""))
        code = exc.status
        if code == 401:
            return MeshError(
                f"the Kubernetes API server rejected meshlab's credentials (401) on {verb} {what}: "
                "renew them, or fix target.kubeconfig/target.context"
            )
        if code == 403:
            denied = re.search(r"cannot (\w+) resource", message)
            rbac_verb = denied.group(1) if denied else ("patch" if verb == "apply" else verb)
            return MeshError(
                f"Kubernetes denied '{rbac_verb}' on {qualified} in namespace {self.namespace} "
                f"(403 Forbidden) for {what}: grant meshlab's Role with "
                f"`{RBAC_FIX.format(ns=self.namespace)}` (see istio_manifests/rbac/)"
            )
        if code == 404 and not _names_object(exc):
            return MeshError(
                f"the API server does not serve {qualified}/{res.version} (404 on the resource "
                f"type): {res.install}"
            )
        if code == 404:
            return MeshError(f"{what} does not exist (404) on {verb}: {message}")
        if code == 409:
            return ConflictError(
                f"{what} was changed by someone else during {verb} (409 Conflict: {message}); "
                "re-run the command, or stop the other writer (GitOps controller, kubectl)"
            )
        if code in (400, 422):
            return MeshError(
                f"Kubernetes rejected {what} on {verb} ({code} {exc.reason}): {message}"
            )
        if code == 415:
            return MeshError(f"the API server cannot {verb} {what} (415): {message}; upgrade it")
        if code is not None and (code >= 500 or code == 429):
            return KubeUnavailableError(
                f"Kubernetes API error {code} {exc.reason} on {verb} {what}: {message}; retry later"
            )
        return MeshError(
            f"Kubernetes API error {code} {exc.reason} on {verb} {what}: {message}; retry later"
        )

    def _network_error(
        self, exc: urllib3.exceptions.HTTPError, verb: str, kind: str, name: str
    ) -> MeshError:
        where = server_address(self.api_client)
        cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
        if isinstance(cause, urllib3.exceptions.TimeoutError):
            return KubeTimeoutError(
                f"the Kubernetes API server at {where} did not answer {verb} {kind} "
                f"{self.namespace}/{name} within {self.timeout:g}s: check the connection "
                "(VPN, proxy) or raise target.requestTimeout"
            )
        return KubeUnavailableError(
            f"cannot reach the Kubernetes API server at {where} ({type(cause).__name__}) on "
            f"{verb} {kind} {self.namespace}/{name}: is the cluster up and target.context right?"
        )


def _as_dict(response: Any) -> dict[str, Any]:
    """Decode an answer read with ``_preload_content=False``.

    The generated client maps only some status codes to a return type (a server-side apply that
    creates the object answers 201, which it would turn into None), so meshlab decodes the JSON.
    """
    try:
        result = json.loads(response.data)
    except (AttributeError, TypeError, ValueError):
        result = None
    if not isinstance(result, dict):
        raise MeshError("unexpected answer from the Kubernetes API: not a JSON object")
    return result


def _status(exc: ApiException) -> dict[str, Any]:
    """The ``Status`` object of an error answer ({} if the body is not one, e.g. a plain 404)."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) and body.get("kind") == "Status" else {}


def _names_object(exc: ApiException) -> bool:
    """True for "this object is not found", False for "this resource type is not served".

    An API server answers a missing object with a NotFound Status whose details name it; an
    unserved group/version gets a plain-text "404 page not found" and an unserved resource of a
    served group a Status without ``details.name``.
    """
    details = _status(exc).get("details") or {}
    return bool(details.get("name"))


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


IstioObjects = KubeObjects  # the name before the Gateway API joined; kept for callers and tests

"""A fake Kubernetes API server for meshlab's kinds, on 127.0.0.1, for the backend's tests.

It serves the real REST paths of the custom-objects API for every kind in Istio's CRD file and the
Gateway API's HTTPRoute CRD (``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]``), and of
the core API for Services (``/api/v1/namespaces/{ns}/services[/{name}]``) and of the
``coordination.k8s.io/v1`` Leases (``/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]``,
built in like Services: served with or without CRDs), all with the semantics meshlab relies on:

* bearer-token authentication (401), RBAC denials of configured (verb, plural) pairs (403 with the
  real message shape); server-side apply of a new object needs ``create`` as well as ``patch``;
* GET (object, list), POST, PUT (``metadata.resourceVersion`` required, 409 when stale), PATCH as
  ``application/apply-patch+yaml`` (field manager required, managedFields-lite ownership, conflicts
  and ``force``; see :mod:`fake_ssa`) and ``application/merge-patch+json``; other patch types get the
  real 415; DELETE with ``preconditions.resourceVersion``;
* ``dryRun=All``: everything is validated and answered, nothing persisted, no version consumed;
* a resourceVersion counter shared by all objects, ``generation`` bumped on spec changes, uid,
  creationTimestamp, managedFields;
* strict validation of every stored body against the CRD's openAPIV3Schema, CEL rules included
  (unknown fields -> 400 "strict decoding error", other violations -> 422 Invalid); HTTPRoutes are
  validated by :mod:`tests.support.gateway_schema` and stored with the CRD's defaults applied,
  Services by :mod:`tests.support.core_schema` and stored with what the server fills in
  (``clusterIP``, ``sessionAffinity``, ...), as a real server would;
* 404 for resource types that are not served (a plain-text 404 for an unknown group/version, a
  Status without ``details.name`` for an unknown plural), or for all Istio kinds if ``crds=False``.

Faults for tests: ``deny`` (403), ``delays`` (a request that hangs unprocessed, or is processed and answered late),
``hooks`` (run before a request is handled, e.g. a concurrent writer), ``failures`` (a list of
:class:`~tests.kube.fake_http.Failure`: the next N matching requests, optionally after skipping some,
answered 5xx/429 unprocessed or hung until the client times out; use :meth:`FakeKubeAPI.fail`). Every request is recorded
(method, path, verb, status, time) without headers, so nothing secret is kept; every stored change
goes to ``audit`` (time, plural, name, resourceVersion, annotations after the change; ``None`` for
a deletion), as the API server's audit log would show it, so tests can check the order of writes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.kube.fake_http import ApiError, Failure, Request, parse_body, serve
from tests.kube.fake_kinds import BUILT_IN, Crds, _Ctx, served_kinds
from tests.kube.fake_ssa import Owners, managed_fields, update
from tests.kube.fake_verbs import Audit, Verbs
from tests.support.istio_schema import load_crds


@dataclass
class Hook:
    """Run ``action`` before the next ``times`` requests matching method and plural."""

    method: str
    plural: str
    action: Callable[[], None]
    times: int = 1


@dataclass
class FakeKubeAPI(Verbs):
    """The fake's state and configuration; ``start()`` serves it on 127.0.0.1."""

    token: str
    crds_installed: bool = True
    extra_crds: tuple[Path, ...] = ()  # CRD files served beyond Istio's and HTTPRoute's
    deny: set[tuple[str, str]] = field(default_factory=set)  # (verb, plural)
    # (method, plural) -> (seconds, "hang" | "late"): hang = drop unprocessed, late = answer late
    delays: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    hooks: list[Hook] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    audit: list[Audit] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    internal_errors: list[str] = field(default_factory=list)
    authorized: set[tuple[str, str]] = field(default_factory=set)  # (verb, plural) RBAC allowed
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    owners: dict[tuple[str, str, str], Owners] = field(default_factory=dict)
    resource_version: int = 1000
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.extra: Crds = {}
        for path in self.extra_crds:
            self.extra.update(load_crds(str(path)))
        self._kinds = served_kinds(self.extra)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeKubeAPI:
        self._server, self._thread = serve(self)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults ----------------------------------------------------------------------------------

    def fail(self, method: str, plural: str, times: int = 1, **how: Any) -> Failure:
        """Inject a :class:`Failure` (see there for ``status``, ``hang`` and ``after``)."""
        failure = Failure(method, plural, times, **how)
        with self._lock:
            self.failures.append(failure)
        return failure

    def take_failure(self, method: str, plural: str) -> Failure | None:
        """The failure this request meets, if any (consumes one of its ``times``)."""
        with self._lock:
            for failure in self.failures:
                if failure.times > 0 and failure.matches(method, plural):
                    if failure.after > 0:
                        failure.after -= 1
                        continue
                    failure.times -= 1
                    return failure
        return None

    # -- direct access for tests (what kubectl would do) ---------------------------------------

    def put_object(
        self, obj: dict[str, Any], manager: str = "kubectl-client-side-apply"
    ) -> dict[str, Any]:
        """Create or overwrite an object as another client would (validated, versioned)."""
        with self._lock:
            plural = self._plural(obj["apiVersion"], obj["kind"])
            key = (plural, obj["metadata"]["namespace"], obj["metadata"]["name"])
            old = self.objects.get(key)
            body = json.loads(json.dumps(obj))
            ctx = _Ctx(obj["apiVersion"], obj["kind"], plural, key[1], key[2], key, {}, False)
            stored = self._store(key, old, self._defaulted(ctx, body), manager=manager)
            return json.loads(json.dumps(stored))

    def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((plural, namespace, name))
            return json.loads(json.dumps(obj)) if obj is not None else None

    # -- request handling ----------------------------------------------------------------------

    def _plural(self, api_version: str, kind: str) -> str:
        for (served, plural), served_kind in self._kinds.items():
            if served == api_version and served_kind == kind:
                return plural
        raise ApiError(404, "NotFound", f"no kind {kind} in {api_version}")

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if parts[:1] == ["api"]:  # api/v1/namespaces/{ns}/{plural}[/{name}]: the core group
            parts = ["apis", "", *parts[1:]]
        # apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
        if len(parts) not in (6, 7) or parts[0] != "apis" or parts[3] != "namespaces":
            return 404, "404 page not found\n"
        api_version = f"{parts[1]}/{parts[2]}" if parts[1] else parts[2]
        namespace, plural = parts[4], parts[5]
        name = parts[6] if len(parts) == 7 else None
        if headers.get("authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        installed = self.crds_installed or api_version in BUILT_IN
        if not installed or not any(v == api_version for v, _ in self._kinds):
            return 404, "404 page not found\n"
        kind = self._kinds.get((api_version, plural))
        if kind is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }[method]
        self._authorize(verb, plural, namespace, name, api_version.rpartition("/")[0])
        dry_run = query.get("dryRun")
        if dry_run is not None and dry_run != "All":
            raise ApiError(400, "BadRequest", f'unsupported dry run option "{dry_run}": use All')
        with self._lock:
            for hook in list(self.hooks):
                if hook.method == method and hook.plural == plural and hook.times > 0:
                    hook.times -= 1
                    hook.action()
            key = (plural, namespace, name or "")
            ctx = _Ctx(api_version, kind, plural, namespace, name, key, query, dry_run == "All")
            if method == "GET":
                return 200, self._get(ctx)
            payload = parse_body(body, headers.get("content-type", ""))
            if method == "POST":
                return 201, self._create(ctx, payload)
            if method == "PUT":
                return 200, self._replace(ctx, payload)
            if method == "PATCH":
                return self._patch(ctx, payload, headers.get("content-type", ""))
            return 200, self._delete(ctx, payload)

    def _authorize(
        self, verb: str, plural: str, namespace: str, name: str | None, group: str
    ) -> None:
        if (verb, plural) in self.deny:
            qualified = f"{plural}.{group}" if group else plural
            what = f'{qualified} "{name}"' if name else qualified
            raise ApiError(
                403,
                "Forbidden",
                f'{what} is forbidden: User "system:serviceaccount:{namespace}:meshlab" cannot '
                f'{verb} resource "{plural}" in API group "{group}" in the namespace "{namespace}"',
                {"name": name or "", "group": group, "kind": plural},
            )
        self.authorized.add((verb, plural))

    def _store(
        self,
        key: tuple[str, str, str],
        old: dict[str, Any] | None,
        new: dict[str, Any],
        *,
        manager: str,
        ctx: _Ctx | None = None,
        owners: Owners | None = None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if owners is None:
            owners = update(old, new, self.owners.get(key, {}), manager)
        metadata = new.setdefault("metadata", {})
        old_meta = (old or {}).get("metadata", {})
        generation = old_meta.get("generation", 0)
        if old is None or old.get("spec") != new.get("spec"):
            generation += 1
        dry_run = ctx is not None and ctx.dry_run
        version = self.resource_version + (0 if dry_run else 1)
        metadata.update(
            {
                "uid": old_meta.get("uid", str(uuid.uuid4())),
                "creationTimestamp": old_meta.get("creationTimestamp", now),
                "generation": generation,
                "resourceVersion": str(version),
                "managedFields": managed_fields(owners, new["apiVersion"], now),
            }
        )
        if not dry_run:
            self.resource_version = version
            self.objects[key] = new
            self.owners[key] = owners
            annotations = dict(metadata.get("annotations") or {})
            self.audit.append(Audit(time.time(), key[0], key[2], str(version), annotations))
        return json.loads(json.dumps(new))


__all__ = ["ApiError", "Audit", "Failure", "FakeKubeAPI", "Hook", "Request"]

"""The verbs of the fake API server: what GET, POST, PUT, PATCH and DELETE do to its objects.

:class:`Verbs` is the half of :class:`~tests.kube.fake_apiserver.FakeKubeAPI` that answers a
request once it is routed and authorized (the other half keeps the state, the faults and the
HTTP routing): reads (404 with the real Status shape), create (409 AlreadyExists), replace and
merge patch (``metadata.resourceVersion``: required for PUT, 409 when stale), server-side apply
(:mod:`tests.kube.fake_ssa`), delete with ``preconditions.resourceVersion``, and the strict
validation every stored body goes through (:mod:`tests.kube.fake_kinds`): unknown fields and
values that cannot be decoded are 400, schema and CEL violations 422, as on a real server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tests.kube.fake_http import ApiError, parse_bool
from tests.kube.fake_kinds import Crds, _Ctx, _schema_errors, defaulted
from tests.kube.fake_ssa import ApplyConflict, Owners, apply, merge_patch


@dataclass(frozen=True)
class Audit:
    """One stored change: when, which object, its new resourceVersion and annotations."""

    at: float
    plural: str
    name: str
    resource_version: str
    annotations: dict[str, str] | None  # None: deleted


class Verbs:
    """The request handlers; the state (``objects``, ``owners``, ``resource_version``, ``audit``)
    and ``_store``/``_authorize`` are :class:`~tests.kube.fake_apiserver.FakeKubeAPI`'s."""

    objects: dict[tuple[str, str, str], dict[str, Any]]
    owners: dict[tuple[str, str, str], Owners]
    resource_version: int
    audit: list[Audit]

    _store: Callable[..., dict[str, Any]]  # (key, old, new, *, manager, ctx=None, owners=None)
    _authorize: Callable[..., None]  # (verb, plural, namespace, name, group)
    extra: Crds  # CRDs served beyond Istio's and the Gateway API's

    def _get(self, ctx: _Ctx) -> Any:
        if ctx.name is None:
            items = [
                o
                for (p, ns, _), o in sorted(self.objects.items())
                if p == ctx.plural and ns == ctx.namespace
            ]
            return {
                "apiVersion": ctx.api_version,
                "kind": f"{ctx.kind}List",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items,
            }
        return self._existing(ctx)

    def _existing(self, ctx: _Ctx) -> dict[str, Any]:
        obj = self.objects.get(ctx.key)
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'{ctx.qualified} "{ctx.name}" not found',
                {"name": ctx.name, "group": ctx.group, "kind": ctx.plural},
            )
        return obj

    def _create(self, ctx: _Ctx, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name")
        ctx = replace(ctx, name=name, key=(ctx.plural, ctx.namespace, name or ""))
        if (body.get("metadata") or {}).get("resourceVersion"):
            raise ApiError(
                400, "BadRequest", "resourceVersion should not be set on objects to be created"
            )
        if ctx.key in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{ctx.qualified} "{name}" already exists',
                {"name": name},
            )
        return self._store(ctx.key, None, self._checked(ctx, body), manager=_manager(ctx), ctx=ctx)

    def _replace(self, ctx: _Ctx, body: dict[str, Any]) -> dict[str, Any]:
        old = self._existing(ctx)
        self._check_version(ctx, body, required=True)
        checked = self._checked(ctx, body, old)
        return self._store(ctx.key, old, checked, manager=_manager(ctx), ctx=ctx)

    def _patch(self, ctx: _Ctx, body: Any, content_type: str) -> tuple[int, dict[str, Any]]:
        mime = content_type.split(";")[0].strip()
        if mime == "application/apply-patch+yaml":
            return self._apply(ctx, body)
        if "force" in ctx.query:
            raise ApiError(
                400, "BadRequest", "force flag must be unset for non-apply patch requests"
            )
        if mime == "application/merge-patch+json":
            old = self._existing(ctx)
            merged = merge_patch(json.loads(json.dumps(old)), body)
            self._check_version(ctx, body, required=False)
            return 200, self._store(
                ctx.key, old, self._checked(ctx, merged, old), manager=_manager(ctx), ctx=ctx
            )
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format ({mime}) - accepted media types "
            "include: application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml",
        )

    def _apply(self, ctx: _Ctx, config: Any) -> tuple[int, dict[str, Any]]:
        manager = ctx.query.get("fieldManager")
        if not manager:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                "Required value: is required for apply patch",
            )
        if not isinstance(config, dict):
            raise ApiError(400, "BadRequest", "apply patch body must be an object")
        old = self.objects.get(ctx.key)
        if old is None:
            self._authorize("create", ctx.plural, ctx.namespace, ctx.name, ctx.group)
        self._check_version(ctx, config, required=False)
        # The configuration itself must be a valid, complete object (defaults are not its fields).
        self._checked(ctx, json.loads(json.dumps(config)))
        force = parse_bool(ctx.query.get("force", "false"))
        try:
            merged, owners = apply(old, config, self.owners.get(ctx.key, {}), manager, force=force)
        except ApplyConflict as exc:
            raise ApiError(
                409,
                "Conflict",
                str(exc),
                {
                    "name": ctx.name,
                    "causes": [
                        {
                            "reason": "FieldManagerConflict",
                            "field": "." + ".".join(p),
                            "message": f'conflict with "{w}"',
                        }
                        for w, p in exc.conflicts
                    ],
                },
            ) from None
        stored = self._store(
            ctx.key, old, self._checked(ctx, merged, old), manager=manager, ctx=ctx, owners=owners
        )
        return (201 if old is None else 200), stored

    def _delete(self, ctx: _Ctx, options: Any) -> dict[str, Any]:
        obj = self._existing(ctx)
        wanted = ((options or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: ResourceVersion in precondition: "
                f"{wanted}, ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
            )
        if not ctx.dry_run:
            del self.objects[ctx.key]
            self.owners.pop(ctx.key, None)
            self.audit.append(Audit(time.time(), ctx.plural, ctx.name or "", "", None))
        return obj

    def _check_version(self, ctx: _Ctx, body: dict[str, Any], *, required: bool) -> None:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is None:
            if required:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{ctx.kind} "{ctx.name}" is invalid: '
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                )
            return
        current = (self.objects.get(ctx.key) or {}).get("metadata", {}).get("resourceVersion")
        if wanted != current:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {ctx.qualified} "{ctx.name}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
                {"name": ctx.name},
            )

    def _checked(
        self, ctx: _Ctx, body: dict[str, Any], old: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Validate an object for this path; strict about unknown fields, like fieldValidation=Strict.

        ``old``: the stored object of an update, for the CRD's transition rules (``oldSelf``).
        """
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be an object")
        if body.get("apiVersion") != ctx.api_version or body.get("kind") != ctx.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version/kind in the body ({body.get('apiVersion')}, "
                f"{body.get('kind')}) does not match the path ({ctx.api_version}, {ctx.kind})",
            )
        metadata = body.setdefault("metadata", {})
        if metadata.get("name") != ctx.name:
            raise ApiError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        if metadata.setdefault("namespace", ctx.namespace) != ctx.namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the object does not match the namespace on the URL",
            )
        bare = {k: v for k, v in body.items() if k != "status"}
        bare["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
        errors = _schema_errors(bare, old, self.extra)  # UnsupportedRule propagates: a 500
        undecodable = [e.removeprefix("decode: ") for e in errors if e.startswith("decode: ")]
        if undecodable:
            raise ApiError(
                400,
                "BadRequest",
                f"{ctx.kind} in version {ctx.api_version} cannot "
                "be handled as a " + ctx.kind + ": " + "; ".join(undecodable),
            )
        unknown = [e for e in errors if e.endswith("unknown field")]
        if unknown:
            raise ApiError(
                400,
                "BadRequest",
                "strict decoding error: "
                + ", ".join(f'unknown field "{e.split(":")[0]}"' for e in unknown),
            )
        if errors:
            raise ApiError(
                422,
                "Invalid",
                f'{ctx.kind}.{ctx.group or "core"} "{ctx.name}" is invalid: ['
                + ", ".join(errors)
                + "]",
            )
        return self._defaulted(ctx, body)

    def _defaulted(self, ctx: _Ctx, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as the server stores it: the schema's defaults, server-assigned fields."""
        return defaulted(ctx.api_version, body, self.objects.get(ctx.key), len(self.objects))


def _manager(ctx: _Ctx) -> str:
    return str(ctx.query.get("fieldManager") or "unknown")

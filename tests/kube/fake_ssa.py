"""Field ownership for the fake API server: server-side apply with managedFields-lite semantics.

Like the real field manager, every manager (name + operation) owns a set of field paths of an
object's ``metadata.labels``, ``metadata.annotations`` and ``spec``. Maps are granular, lists are
atomic (Istio's CRDs declare no ``x-kubernetes-list-type``, so the API server treats every list as
atomic). An apply sets the applier's fields, removes the fields it applied before and no longer
applies (unless another manager also owns them), and conflicts (409) when it would change a value
another manager owns, unless ``force`` takes that field over. An update (PUT, merge patch) gives its
manager every field it changed. ``managed_fields`` renders the sets as ``FieldsV1``.
"""

from __future__ import annotations

import copy
from typing import Any

Path = tuple[str, ...]
Manager = tuple[str, str]  # (manager, operation)
Owners = dict[Manager, set[Path]]
_MISSING = object()


def leaves(obj: dict[str, Any]) -> dict[Path, Any]:
    """Every owned leaf of an object: label/annotation entries and spec leaves (lists atomic)."""
    out: dict[Path, Any] = {}
    metadata = obj.get("metadata") or {}
    for key in ("labels", "annotations"):
        for name, value in (metadata.get(key) or {}).items():
            out[("metadata", key, name)] = value
    if "spec" in obj:
        _walk(obj["spec"], ("spec",), out)
    return out


def _walk(value: Any, path: Path, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _walk(item, (*path, key), out)
    else:
        out[path] = value


def _get(obj: dict[str, Any], path: Path) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)


def _remove(obj: dict[str, Any], path: Path) -> None:
    """Remove a field, and the maps it leaves empty (they were only there to hold it)."""
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
        for parent, key in reversed(parents):
            if parent[key] == {} and key not in ("spec", "metadata"):
                del parent[key]
            else:
                break


def _related(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


class ApplyConflict(Exception):
    """Another manager owns fields the apply would change; ``fields`` are their paths."""

    def __init__(self, conflicts: list[tuple[str, Path]]) -> None:
        self.conflicts = conflicts
        super().__init__(
            f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) != 1 else ''}: "
            + "; ".join(
                f'conflict with "{who}": .{".".join(path)}' for who, path in sorted(conflicts)
            )
        )


def apply(
    current: dict[str, Any] | None,
    config: dict[str, Any],
    owners: Owners,
    manager: str,
    *,
    force: bool,
) -> tuple[dict[str, Any], Owners]:
    """The object and ownership after ``manager`` applies ``config`` (raises ApplyConflict)."""
    me: Manager = (manager, "Apply")
    result = copy.deepcopy(current) if current is not None else {}
    owners = {k: set(v) for k, v in owners.items()}
    applied = leaves(config)
    conflicts: list[tuple[str, Path]] = []
    for path, value in applied.items():
        if _get(result, path) == value:
            continue
        for who, paths in owners.items():
            if who != me and any(_related(path, p) for p in paths):
                conflicts.append((who[0], path))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for path, value in applied.items():
        if _get(result, path) != value:
            for who in owners:
                if who != me:
                    owners[who] = {p for p in owners[who] if not _related(path, p)}
    for path in owners.get(me, set()) - set(applied):
        shared = any(path in paths for who, paths in owners.items() if who != me)
        if not shared:
            _remove(result, path)
    for key in ("apiVersion", "kind"):
        result[key] = config[key]
    result.setdefault("metadata", {}).update(
        {k: v for k, v in config["metadata"].items() if k in ("name", "namespace")}
    )
    for path, value in applied.items():
        _set(result, path, value)
    owners[me] = set(applied)
    return result, {k: v for k, v in owners.items() if v}


def update(old: dict[str, Any] | None, new: dict[str, Any], owners: Owners, manager: str) -> Owners:
    """Ownership after ``manager`` replaced ``old`` by ``new`` (PUT, merge patch, create)."""
    me: Manager = (manager, "Update")
    before = leaves(old) if old is not None else {}
    after = leaves(new)
    changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
    gone = set(before) - set(after)
    result: Owners = {}
    for who, paths in owners.items():
        kept = {p for p in paths if not any(_related(p, c) for c in changed | gone)}
        kept |= {p for p in paths if p in after and p not in changed}
        result[who] = kept
    result[me] = (result.get(me, set()) | changed) & set(after)
    return {k: v for k, v in result.items() if v}


def managed_fields(owners: Owners, api_version: str, time: str) -> list[dict[str, Any]]:
    """``metadata.managedFields`` entries (FieldsV1) for the ownership sets."""
    entries = []
    for (manager, operation), paths in sorted(owners.items()):
        fields: dict[str, Any] = {}
        for path in sorted(paths):
            node = fields
            for key in path:
                node = node.setdefault(f"f:{key}", {})
        entries.append(
            {
                "manager": manager,
                "operation": operation,
                "apiVersion": api_version,
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            }
        )
    return entries


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result

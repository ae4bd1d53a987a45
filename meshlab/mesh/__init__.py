"""Mesh backends: where routes are applied. One module per backend behind :class:`MeshBackend`."""

from meshlab.mesh.base import Fault, FaultRole, MeshBackend, RoutingState
from meshlab.mesh.local import LocalMesh

__all__ = ["Fault", "FaultRole", "LocalMesh", "MeshBackend", "RoutingState"]

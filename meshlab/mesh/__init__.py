"""Mesh backends: where routes are applied. One module per backend behind :class:`MeshBackend`."""

from meshlab.mesh.base import MeshBackend, RoutingState

__all__ = ["MeshBackend", "RoutingState"]

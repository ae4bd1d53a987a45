"""A routing API added by a test, as a user would add one: this module plus one registry line.

It renders the Gateway API objects with the HTTPRoute at ``gateway.networking.k8s.io/v1beta1``
(what clusters with an older Gateway API install serve), to show that the Kubernetes backend
needs nothing else: it addresses the kinds where the rendered objects' apiVersion says.
"""

from __future__ import annotations

from meshlab.manifests import Manifest, RoutingPlan
from meshlab.manifests.gateway import render_gateway


def render_v1beta1(plan: RoutingPlan) -> list[Manifest]:
    """The Gateway API objects of ``plan``, the HTTPRoute (last) at v1beta1."""
    *services, route = render_gateway(plan)
    return [*services, {**route, "apiVersion": "gateway.networking.k8s.io/v1beta1"}]

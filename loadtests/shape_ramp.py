"""Ramped load: add to ``-f`` next to a locustfile; follows ``load.ramp`` (from, to, duration)."""

from meshlab.load.locust_user import RampShape


class Ramp(RampShape):
    abstract = False

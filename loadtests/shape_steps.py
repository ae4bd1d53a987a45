"""Stepped load: add to ``-f`` after a locustfile; holds each (rps, duration) of load.steps."""

from meshlab.load.locust_user import StepsShape


class Steps(StepsShape):
    abstract = False

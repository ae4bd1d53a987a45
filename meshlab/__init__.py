"""meshlab: test a new model version against the live one in production traffic.

Istio routing for canary, shadow, blue/green and A/B tests; Locust load with a raw record of every
request; sequential statistics that promote or abort with stated error guarantees.
"""

__version__ = "0.1.0"

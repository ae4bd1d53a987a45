"""Orchestration: the controller loop, its ports, live sources, state file, notifications and demo.

This layer decides *when* things happen; what happens at the edges (mesh, load, metrics) lives in
the backend packages, and what the numbers mean lives in :mod:`meshlab.stats`.
"""

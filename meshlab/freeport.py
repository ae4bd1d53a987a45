"""Loopback ports to hand to a child process that will listen on them later.

The usual trick (bind port 0, read the number, close, pass it on) draws from the kernel's
*ephemeral* range, the same range every outgoing connection takes its local port from. Between the
close and the child's ``bind`` an outgoing connection (Locust to Envoy, Envoy to a model server,
a health poll) can take that port, and the child dies with ``EADDRINUSE``: CI saw exactly that,
once in a few runs, as a model server failing at start-up.

So :func:`free_port` picks at random from the ports *below* the ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``), which outgoing connections never use, checks that
nothing listens there now, and never hands the same port out twice in one process. What is left is
another program choosing the same port in the same moment, which a random pick from thousands of
ports makes rare rather than routine.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

LOOPBACK = "127.0.0.1"
LOWEST = 10_000  # below this sit well-known and registered services
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()
_lock = threading.Lock()
_random = random.SystemRandom()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default when unreadable)."""
    try:
        low, high = (int(p) for p in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32_768, 60_999
    return low, high


def _pool() -> range:
    low, high = ephemeral_range()
    if low - LOWEST >= 1_000:
        return range(LOWEST, low)
    return range(high + 1, 65_536) if 65_535 - high >= 1_000 else range(LOWEST, 65_536)


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` that nothing listens on now, outside the ephemeral range, new to us."""
    pool = _pool()
    with _lock:
        if len(_given) > len(pool) // 2:  # a long-lived process: old ports are long closed
            _given.clear()
        for _ in range(200):
            port = _random.choice(pool)
            if port not in _given and _bindable(port, host):
                _given.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded host: fall back
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

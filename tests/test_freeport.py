"""Ports handed to model servers stay clear of the range outgoing connections draw from."""

from __future__ import annotations

import socket

import pytest

from meshlab import freeport


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    low, high = freeport.ephemeral_range()
    ports = [freeport.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    for port in ports:
        assert not low <= port <= high
        assert port >= freeport.LOWEST
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_something_listens_on_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr(freeport, "_pool", lambda: range(busy, busy + 2))
        monkeypatch.setattr(freeport, "_given", set())
        handed = [freeport.free_port() for _ in range(5)]
        assert busy not in handed
        assert handed[0] == busy + 1 or not freeport._bindable(busy + 1, "127.0.0.1")


def test_an_outgoing_connection_cannot_take_a_handed_out_port() -> None:
    """The CI failure: a client's local port equal to one a model server was about to bind."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        target = server.getsockname()
        clients = [socket.create_connection(target) for _ in range(64)]
        try:
            used = {c.getsockname()[1] for c in clients}
            handed = {freeport.free_port() for _ in range(64)}
            assert not used & handed
            low, high = freeport.ephemeral_range()
            assert all(low <= p <= high for p in used)  # where the kernel puts outgoing ports
        finally:
            for c in clients:
                c.close()

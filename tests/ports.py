"""Distinct free TCP ports for the tests' multi-process runs.

Lightning picks a free port itself when ``MASTER_PORT`` is unset, but two DDP runs started at the same moment
(the kill-and-resume test starts an uninterrupted and a to-be-killed run together) can be handed the same
one, and the second then fails with EADDRINUSE. A test sets ``MASTER_PORT`` from here instead.
"""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port() -> int:
    """A port that is free now and was not returned before in this test session."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port

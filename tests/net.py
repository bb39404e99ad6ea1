"""Network helpers for tests that launch distributed jobs."""

import socket


def free_port() -> str:
    """A TCP port nobody listens on now, for ``torchrun --master-port``.

    Ports derived from a pid or fixed ones collide when two xdist workers launch jobs at once, and a
    job that joins another's rendezvous waits for ranks that never come."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])

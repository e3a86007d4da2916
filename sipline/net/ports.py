"""Finding free ports for listeners: what tests, benchmarks and `make run` helpers share."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1", *, span: int = 1, attempts: int = 100) -> int:
    """A port free on ``host`` for both UDP and TCP right now, with the ``span - 1``
    ports above it free too (baresip binds TLS on its SIP port + 1).

    The ports are bound and released again, so another process can still take
    them before the caller does: good enough for loopback tests and benches.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
        if port + span - 1 <= 65535 and all(_free(host, p, family) for p in range(port, port + span)):
            return port
    raise RuntimeError(f"no free port on {host}")


def _free(host: str, port: int, family: socket.AddressFamily) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(family, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True

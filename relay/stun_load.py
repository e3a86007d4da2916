"""A STUN Binding load loop: how many requests a server answers per second over UDP.

Run it in a process of its own beside the server (``sipline relay``):

    python -m relay.stun_load --port 3478 --duration 5 --window 64

It keeps ``window`` requests in flight for ``duration`` seconds (bounded in
count and time; a reply not back within ``--timeout`` writes the window off as
lost) and prints what was sent and answered.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from aioice import stun

SUCCESS = b"\x01\x01"  # Binding success response


@dataclass(frozen=True, slots=True)
class LoadResult:
    sent: int
    answered: int
    lost: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"sent={self.sent} answered={self.answered} lost={self.lost} "
            f"seconds={self.seconds:.2f} rate={self.rate:.0f}/s"
        )


def requests(count: int) -> list[bytes]:
    """Binding requests with FINGERPRINT, each its own transaction ID."""
    built = []
    for _ in range(count):
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, os.urandom(12))
        request.add_fingerprint()
        built.append(bytes(request))
    return built


def run_load(
    host: str, port: int, duration: float, window: int = 64, timeout: float = 0.2
) -> LoadResult:
    """Keep ``window`` Binding requests in flight to ``host:port`` for ``duration`` seconds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    pool = requests(max(window, 1) * 4)
    sent = answered = lost = in_flight = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.settimeout(timeout)
        send, recv = sock.send, sock.recv
        start = time.perf_counter()
        deadline = start + duration
        while time.perf_counter() < deadline:
            try:
                while in_flight < window:
                    send(pool[sent % len(pool)])
                    sent += 1
                    in_flight += 1
                reply = recv(2048)
            except (TimeoutError, ConnectionRefusedError) as exc:
                lost += in_flight
                in_flight = 0
                if isinstance(exc, ConnectionRefusedError):  # nothing listens (yet)
                    time.sleep(timeout)
                continue
            in_flight -= 1
            if reply[:2] == SUCCESS:
                answered += 1
        seconds = time.perf_counter() - start
        late = _drain(recv, in_flight)  # replies still on their way are not lost
    return LoadResult(sent, answered + late, lost + in_flight - late, seconds)


def _drain(recv: Callable[[int], bytes], in_flight: int) -> int:
    """Successes among the ``in_flight`` replies still to come, each waited for up to the timeout."""
    late = 0
    for _ in range(in_flight):
        try:
            late += recv(2048)[:2] == SUCCESS
        except (TimeoutError, ConnectionRefusedError):
            break
    return late


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay.stun_load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3478)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds (at most 300)")
    parser.add_argument("--window", type=int, default=64, help="requests in flight")
    parser.add_argument("--timeout", type=float, default=0.2, help="seconds to wait for a reply")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 300 or args.window < 1:
        parser.error("--duration must be in (0, 300] and --window at least 1")
    result = run_load(args.host, args.port, args.duration, args.window, args.timeout)
    print(result)
    return 0 if result.answered else 1


if __name__ == "__main__":
    sys.exit(main())

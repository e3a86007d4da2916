"""Workers: ``[node] workers`` processes of one role on one address.

Every worker binds the role's address with SO_REUSEPORT (UDP, and the TCP and
TLS listeners): the kernel hashes each source (its 4-tuple) to one worker's
socket, so a phone's requests keep reaching the same worker while the set of
sockets stays the same. Transactions stay with their worker:

- a worker's own requests leave from a UDP socket of its own, and its Via
  names that socket's port (``Workers.own_port``), so their responses come
  back to it (RFC 3261 §18.2.2, and §18.2.1 with rport: the same port);
- a CANCEL or the ACK of a non-2xx final comes from the INVITE's 4-tuple and
  reaches the INVITE's worker, unless the set changed in between (a worker
  restarted) or the phone sent it from another socket. A worker that gets one
  for an INVITE it does not hold hands it over, sealed (``seal``), to the
  other workers' own sockets (an ACK only within ``CHANGED_WINDOW`` of a
  change of the set); the one that holds the INVITE takes it as if it
  had come from the phone, the others drop it. The CANCEL names the caller's
  branch, not ours, so nothing in it says which worker signed what: every
  other worker is asked, and a sealed handover is believed only under the
  node secret and for ``MAX_AGE`` seconds (its source address decides where
  answers go, and whom the guard counts).

Workers share bindings, nonce counts, bans and counters the way nodes of a
cluster do (the location change feed, Redis, the shared secret): one design
for more cores and more machines. So more than one needs ``[redis] url``
(``check``). The supervisor (sipline.net.supervisor) binds every worker's own
socket before it starts them (a restarted worker gets its port back) and tells
each its index and everyone's port (``Workers.spec``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any

from sipline.config import ConfigError
from sipline.logs import event
from sipline.sip.address import Address

MAGIC = b"SLW1"  # a handover, not SIP: no SIP message starts so
MAC_BYTES = 32
MAX_AGE = 2.0  # seconds a handover is believed (a CANCEL is retransmitted after T1 anyway)
HANDED = frozenset(("CANCEL", "ACK"))  # what may reach a worker without its INVITE
# Seconds after the set of workers changed (one started or died: the supervisor
# sends SIGUSR1) during which an ACK without Route that matches nothing here is
# handed over too: an INVITE's server transaction waits for the ACK of its
# non-2xx up to timer H (64*T1, 32 s), and a worker takes a few seconds to start.
# Outside it the ACK's 4-tuple still hashes where its INVITE's did, and the ACK
# of every challenge (a 407 answered statelessly, held by no worker) stays put.
CHANGED_WINDOW = 42.0
MAX_DATAGRAM = 65507  # the most a UDP datagram over IPv4 carries


@dataclass(frozen=True, slots=True)
class Workers:
    """This worker among its siblings: ``index``, every worker's own UDP port
    (``ports[index]`` is ours) and ``fd``, our own socket from the supervisor."""

    index: int
    ports: tuple[int, ...]
    fd: int = -1

    @property
    def own_port(self) -> int:
        return self.ports[self.index]

    @property
    def siblings(self) -> tuple[int, ...]:
        return tuple(p for i, p in enumerate(self.ports) if i != self.index)

    def spec(self) -> str:
        """What ``parse`` reads back: INDEX/FD/PORT,PORT..."""
        return f"{self.index}/{self.fd}/{','.join(map(str, self.ports))}"

    @classmethod
    def parse(cls, text: str) -> Workers:
        """ValueError unless ``text`` is a spec with the index among the ports."""
        index, fd, ports = text.split("/")
        workers = cls(int(index), tuple(int(p) for p in ports.split(",")), int(fd))
        if not 0 <= workers.index < len(workers.ports) or not all(
            0 < p < 65536 for p in workers.ports
        ):
            raise ValueError(f"not a worker spec: {text!r}")
        return workers


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def count(settings: Any) -> int:
    """How many processes run the role: ``node.workers``, else one per core when
    the workers can share their state (``[redis] url``), else one."""
    configured: int = settings.node.workers
    if configured:
        return configured
    return cores() if settings.redis.url else 1


def check(settings: Any) -> None:
    """ConfigError naming ``node.workers`` when workers cannot share what they must.

    Workers are nodes of a cluster on one address: a binding one of them
    takes, the nonce counts that keep a digest from being replayed to another
    (RFC 7616 §3.4.5's nc), a ban, all go through Redis."""
    workers = count(settings)
    if workers > 1 and not settings.redis.url:
        raise ConfigError(
            f"node.workers = {workers}: workers share bindings, nonce counts and bans through"
            " Redis; set [redis] url (redis.url), or node.workers = 1"
        )


def one_process(settings: Any, role: str, log: logging.Logger) -> None:
    """A role that keeps its call state in process runs as one, whatever
    ``node.workers`` asks (a config shared by every role may ask for more)."""
    if settings.node.workers > 1:
        event(log, "workers_ignored", logging.WARNING, role=role, workers=settings.node.workers,
              why="only the proxy runs workers")  # fmt: skip


def handover_key(secret: str) -> bytes:
    """The key of sealed handovers, derived from the node secret (never the secret itself)."""
    return hashlib.sha256(b"sipline worker handover\n" + secret.encode()).digest()


def seal(key: bytes, source: Address, data: bytes, now: float) -> bytes:
    """``data`` as received from ``source``, for another worker (``unseal``)."""
    head = f"{now:.3f} {source.transport} {source.host} {source.port}\n".encode()
    body = head + data
    return MAGIC + hmac.digest(key, body, "sha256") + body


def unseal(key: bytes, datagram: bytes, now: float) -> tuple[Address, bytes] | None:
    """(source, data) of a handover sealed under ``key`` at most ``MAX_AGE`` seconds
    ago; None for anything else (forged, stale, malformed)."""
    if not datagram.startswith(MAGIC):
        return None
    start = len(MAGIC) + MAC_BYTES
    mac, body = datagram[len(MAGIC) : start], datagram[start:]
    if not hmac.compare_digest(mac, hmac.digest(key, body, "sha256")):
        return None
    head, newline, data = body.partition(b"\n")
    try:
        stamp, transport, host, port = head.decode("ascii").split(" ")
        sealed_at, source = float(stamp), Address(transport, host, int(port))
    except ValueError:
        return None
    if not newline or not -MAX_AGE <= now - sealed_at <= MAX_AGE:
        return None
    return source, data

"""What the B2BUA knows between two messages: its calls, their timers, its parts.

``Calls`` is the one state object the steps of a call share (``b2bua.setup``,
``answering``, ``indialog``, ``teardown``, ``probes``): the table of legs by
Call-ID (each call is in it twice, once per leg: a request or response finds
its leg by its own Call-ID), the deadlines a call may wait on (failover, the
silence of its hop, timer C, duration limit, session timers), the counters,
the settings the steps read, the next hops (``b2bua.nexthop``) and the
optional parts (accounts, licences, the relay). Beside it,
the few acts every step does the same way: answering a server transaction
(with our Server header) and ACKing a leg's 2xx (RFC 3261 §13.2.2.4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sipline.config import B2buaSection
from sipline.net.metrics import RoleCounts
from sipline.proxying.deadlines import Deadlines, Timers
from sipline.proxying.rules import Local
from sipline.sip.address import Address
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ServerTransaction

from .call import Call, Leg
from .legs import Unreachable, next_hop_address
from .nexthop import NextHops

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

SUPPORTED = "timer"
# What the B2BUA counts (exported as sipline_b2bua_<name>_total on /metrics).
COUNTED = {
    "calls": "INVITEs from trusted peers that opened a call",
    "answered": "Calls answered by the far side (a 2xx on the B leg)",
    "failovers": "B-leg INVITEs sent to the next hop after a 503, 408 or silence",
    "failed": "Calls ended before an answer with a final error to the caller (487 included)",
    "untrusted": "INVITEs refused 403 because they came from no trusted peer",
    "unidentified": "INVITEs refused 403 because they carried no P-Asserted-Identity",
    "refused": "Calls refused 403 by their account's licence",
    "admission_errors": "Licence checks that failed (the call went through uncounted)",
    "media_errors": "Relay requests (offer, answer) that failed: the SDP went through as it came",
    "ghosts": "Answers nobody took (an INVITE given up on, or one not sent on): ACKed and BYEd",
    "redirects": "3xx followed on the B leg (follow_redirects)",
    "timer_c": "Calls ended 408 by timer C: nothing from the far side for timer_c after a 1xx",
    "hops_down": "Next hops marked down: by probes, or at once by a call they failed",
}


class Admission(Protocol):
    """A licence check's verdict (b2bua.licences.Admission)."""

    allowed: bool
    reason: str


class AccountsLike(Protocol):
    def account_of(self, aor: str) -> str | None: ...


class LicencesLike(Protocol):
    def licensed(self, account: str | None) -> bool: ...

    async def admit(
        self, account: str | None, call_id: str, now: float | None = None
    ) -> Admission: ...

    async def release(self, account: str | None, call_id: str) -> None: ...


class MediaLike(Protocol):
    def wants(self, request: Request, source: Address) -> bool: ...

    def caller(self, request: Request, source: Address) -> Address: ...

    def offer(
        self,
        call_id: str,
        from_tag: str,
        sdp: bytes,
        source: Address | None,
        *,
        to_tag: str | None = None,
    ) -> asyncio.Future[bytes]: ...

    def answer(
        self, call_id: str, from_tag: str, to_tag: str, sdp: bytes
    ) -> asyncio.Future[bytes]: ...

    def delete(self, call_id: str, from_tag: str) -> None: ...


class Calls:
    """The calls in progress and what their steps read (see the module's doc);
    ``b2bua`` is the [b2bua] section, ``clock`` monotonic time (a fake one in tests)."""

    def __init__(
        self,
        b2bua: B2buaSection,
        *,
        server_header: str,
        accounts: AccountsLike | None,
        licences: LicencesLike | None,
        media: MediaLike | None,
        clock: Callable[[], float],
    ) -> None:
        self.server_header = server_header
        self.hops = NextHops.from_settings(b2bua)
        self.failover_timeout: float = b2bua.failover_timeout
        self.max_duration: float = b2bua.max_call_duration
        self.follow_redirects: int = b2bua.follow_redirects
        self.session_expires: int = b2bua.session_expires
        self.min_se: int = b2bua.min_se
        self.accounts = accounts
        self.licences = licences
        self.media = media
        self.clock = clock
        self.legs: dict[str, Leg] = {}  # Call-ID of either leg -> that leg
        self.live: set[Call] = set()  # the calls in the table (a leg names its call weakly)
        self.failover: Timers[Call] = Timers()
        self.silence: Deadlines[Call] = Deadlines(b2bua.silence_timeout)
        self.timer_c: Deadlines[Call] = Deadlines(b2bua.timer_c)
        self.duration: Timers[Call] = Timers()
        self.sessions: Timers[Leg] = Timers()
        self.metrics = RoleCounts("b2bua", COUNTED)
        self.metrics.watch("calls_active", "Calls in progress", self.__len__)
        self.metrics.watch("hops_up", "Next hops (ACR nodes, gateways) up", self.hops.up)
        self.counts = self.metrics.values  # plain ints, bumped on the call path
        self._local: Local | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        """Calls in progress."""
        return sum(1 for leg in self.legs.values() if leg is leg.call.a)

    def local(self, node: NodeLike) -> Local:
        """Where we listen, as Via and Contact show it (learnt from the node, which
        delivers nothing before every transport listens)."""
        local = self._local
        if local is None:
            local = self._local = Local.of(node)
        return local

    def answer(
        self,
        node: NodeLike,
        txn: ServerTransaction,
        status: int,
        reason: str | None,
        *,
        stateless: bool = False,
    ) -> None:
        """Answer ``txn`` ourselves (a new To tag: no dialog comes of it);
        ``stateless`` for what nobody vouches for (answered once, the
        transaction forgotten)."""
        response = txn.request.response(status, reason, to_tag=new_tag())
        if stateless:
            response.headers.add("Server", self.server_header)
            node.respond_stateless(txn, response)
        else:
            self.respond(node, txn, response)

    def respond(self, node: NodeLike, txn: ServerTransaction, response: Response) -> None:
        response.headers.add("Server", self.server_header)
        node.respond(txn, response)

    def spawn(self, coroutine: Any, done: Callable[[asyncio.Future[Any]], None] | None) -> None:
        """Run ``coroutine`` as a task held until it ends; ``done`` is called with it then."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if done is not None:
            task.add_done_callback(done)


def send_ack(node: NodeLike, leg: Leg, cseq: int, request: Request | None) -> None:
    """ACK the 2xx to our INVITE numbered ``cseq`` on ``leg``, carrying the body of
    ``request`` (the caller's ACK) if any (RFC 3261 §13.2.2.4: an ACK per 2xx)."""
    dialog = leg.dialog
    if dialog is None:
        return
    body = request.body if request is not None else b""
    content_type = request.headers.get("content-type") if body and request is not None else None
    if body:
        leg.sdp = body
    ack, hop = dialog.create_ack(cseq, via=leg.via(), body=body, content_type=content_type)
    try:
        node.send_stateless(ack, next_hop_address(hop))
    except Unreachable:
        pass  # the far side's 2xx comes again, then its transaction gives up (§13.2.2.4)

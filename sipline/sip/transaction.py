"""The SIP transaction layer (RFC 3261 §17, with the RFC 6026 Accepted states), sans-IO.

Messages and the current time go in, actions come out: ``Send`` bytes to an
address, ``Deliver`` a request or ``DeliverResponse`` a response to the TU,
``TimedOut`` and ``Terminated`` to tell the TU about a transaction's end,
``Refused`` to tell the shell (for its counters and logs) that the layer
turned a message away itself. The shell owns the sockets and calls
``expire`` from one periodic tick.

Every message is validated (``sipline.sip.validation``) before it is
matched or a transaction is made for it: a request that fails gets one
stateless answer (``answer_malformed``) and leaves nothing behind.

Every transaction holds at most one live deadline (the earliest of its
timers) in one ``TimerWheel``; a retransmission costs one slot entry, no task
and no heap entry. Timers are cancelled lazily: an entry that fires after its
transaction moved on is recognised by the transaction's current deadline.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from .address import Address, response_address, stamp_received
from .errors import LocalProtocolError, ParseError
from .headers import Via
from .ids import MAGIC_COOKIE, new_tag
from .message import Headers, Request, Response
from .timers import T1, T2, T4, TimerWheel
from .validation import validate_request, validate_response

# What the wheel can fire early by: its float slack times one tick, far below this.
_EPSILON = 1e-6
TIMER_D = 32.0  # RFC 3261 §17.1.1.2: at least 32 s on unreliable transports
# Server transactions at once, in total and per source IP (see TransactionLayer.limit).
# 1000 calls/s hold about 64k (an INVITE and a BYE each, lingering 32 s on UDP);
# a phone holds a handful, and a source kept to a flood limit of ~8 requests/s
# about 260, so 500 leaves room for bursts and small NATed sites.
MAX_TRANSACTIONS = 100_000
MAX_PER_SOURCE = 500
BUSY_RETRY_AFTER = 5  # seconds, in the 503 over a limit


# What a transaction is found by (``server_key``, ``client_key``): a branch, sent-by,
# method, and for RFC 2543 peers the Call-ID, From tag and CSeq number.
Key = tuple[str | int | None, ...]


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1, §7.2
    TERMINATED = "Terminated"


@dataclass(slots=True, eq=False, repr=False)
class Transaction:
    """What client and server transactions share, timers included.

    ``data`` is what a retransmission timer sends: the request (client), or
    the last response a server sent (empty while it has sent none). Responses
    are kept as these bytes only, not parsed: a transaction lingers 32 s
    after it ends, and objects it holds are what the cyclic GC scans. ``end`` is the deadline of the timeout
    (B, F, H, or §9.1's limit after a CANCEL); while it is None the
    transaction only lingers, and its deadline, when reached, terminates it.
    """

    key: Key
    request: Request
    method: str
    state: State
    dest: Address
    context: object = None  # a free slot for the TU
    data: bytes = b""
    deadline: float | None = None
    interval: float = 0.0
    end: float | None = None

    @property
    def reliable(self) -> bool:
        return self.dest.transport != "UDP"

    @property
    def invite(self) -> bool:
        return self.method == "INVITE"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.key[0]} {self.state.value}>"


@dataclass(slots=True, eq=False, repr=False, kw_only=True)
class ServerTransaction(Transaction):
    """``dest`` is where responses go (§18.2.2); ``cancels`` is, for a CANCEL,
    the INVITE server transaction it matches (None: the TU answers 481)."""

    source: Address
    cancels: ServerTransaction | None = None


@dataclass(slots=True, eq=False, repr=False, kw_only=True)
class ClientTransaction(Transaction):
    """``cancel`` is the CANCEL sent for this INVITE; ``cancels`` is, for a
    CANCEL, the INVITE transaction it cancels."""

    ack: bytes | None = None  # the ACK for a 300-699 final, kept for retransmitted finals
    cancel: ClientTransaction | None = None
    cancel_pending: bool = False  # CANCEL asked for before any 1xx (§9.1)
    cancels: ClientTransaction | None = None
    error: str | None = None  # the transport could not send the request (§17.1.4)


@dataclass(slots=True)
class Send:
    """``txn``: the client transaction whose request this is, for the shell to
    report a transport error on (``TransactionLayer.transport_error``)."""

    data: bytes
    dest: Address
    txn: ClientTransaction | None = None


@dataclass(slots=True)
class Deliver:
    request: Request
    txn: ServerTransaction | None  # None: an ACK matching no server transaction
    source: Address


@dataclass(slots=True)
class DeliverResponse:
    response: Response
    txn: ClientTransaction | None  # None: a stray response (RFC 6026: forward 2xx statelessly)
    source: Address


@dataclass(slots=True)
class Refused:
    """The layer turned a message from ``source`` away itself: answered it
    statelessly (a 503) or dropped it. ``reason`` names why, for counters."""

    reason: str
    source: Address


@dataclass(slots=True)
class TimedOut:
    txn: ClientTransaction | ServerTransaction


@dataclass(slots=True)
class Terminated:
    txn: ClientTransaction | ServerTransaction


Action = Send | Deliver | DeliverResponse | Refused | TimedOut | Terminated
AnyTransaction = ClientTransaction | ServerTransaction


_WORKING = frozenset((State.CALLING, State.TRYING, State.PROCEEDING))


def _busy(txn: Transaction) -> bool:
    # Completed INVITE servers still wait for the ACK (timer H sets ``end``).
    return txn.state in _WORKING or txn.end is not None


def server_key(request: Request, method: str) -> Key:
    """The server transaction a request belongs to (§17.2.3), as ``method`` (ACK -> INVITE)."""
    via = request.via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host, via.port, method)
    # RFC 2543 peers: no usable branch; the To tag is left out so the ACK for a
    # non-2xx final (which carries it) matches its INVITE.
    cseq = request.cseq.number
    return (branch, via.host, via.port, method, request.call_id, request.from_.tag, cseq)


def _unreachable(txn: ClientTransaction) -> Response:
    """The 503 a transport error stands for (§16.9), as if from the next hop."""
    return txn.request.response(503, "Service Unavailable: transport error", to_tag=new_tag())


def same_peer(source: Address, dest: Address) -> bool:
    """``source`` is the transport address ``dest`` names (an IPv6 address however
    written, an IPv4 one also as IPv4-mapped IPv6)."""
    if source.port != dest.port or source.transport != dest.transport:
        return False
    try:
        return _canonical_ip(source.host) == _canonical_ip(dest.host)
    except ValueError:
        return source.host == dest.host


def _canonical_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(host.strip("[]"))
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _names_its_sender(request: Request) -> bool:
    """The top Via has a readable sent-protocol and sent-by (its parameters may not)."""
    try:
        values = request.headers.values("via")
        if not values:
            return False
        Via.parse(values[0].partition(";")[0])
    except ParseError:
        return False
    return True


def client_key(message: Request | Response) -> Key:
    """The client transaction a response belongs to (§17.1.3): top Via branch + CSeq method."""
    return (message.via.branch, message.cseq.method)


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a 300-699 final (§17.1.1.3)."""
    return _derived_request(invite, "ACK", response.headers.get("to") or "")


def cancel_for(invite: Request) -> Request:
    """The CANCEL for a pending INVITE (§9.1)."""
    return _derived_request(invite, "CANCEL", invite.headers.get("to") or "")


def _derived_request(invite: Request, method: str, to: str) -> Request:
    # ACK and CANCEL both take the INVITE's Request-URI, its top Via only, its
    # Route set, From, Call-ID and CSeq number (§9.1, §17.1.1.3).
    old = invite.headers
    headers = Headers()
    headers.add("Via", old.values("via")[0])
    for route in old.get_all("route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", old.get("max-forwards") or "70")
    headers.add("From", old.get("from") or "")
    headers.add("To", to)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} {method}")
    headers.add("Content-Length", "0")
    return Request(method, invite.uri, headers)


class TransactionLayer:
    """Client and server transactions of one node, driven by messages, TU calls and time."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
        tick: float = 0.01,
        auto_trying: bool = True,
        trying_delay: float = 0.2,
        max_transactions: int = MAX_TRANSACTIONS,
        max_per_source: int = MAX_PER_SOURCE,
        exempt: Callable[[Address], bool] = lambda source: False,
    ) -> None:
        self._clock = clock
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.auto_trying = auto_trying
        self.trying_delay = trying_delay
        self.draining = False
        self.retry_after = 0
        self.admit_in_dialog = True
        self.limit(max_transactions, max_per_source, exempt)
        self._wheel: TimerWheel[AnyTransaction] = TimerWheel(tick, clock())
        self._servers: dict[Key, ServerTransaction] = {}
        self._clients: dict[Key, ClientTransaction] = {}
        self._sources: dict[str, int] = {}  # source IP -> its server transactions

    # -- the table -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._servers) + len(self._clients)

    def holds(self, request: Request, method: str) -> bool:
        """A server transaction for ``request`` as ``method`` is here (for a CANCEL or
        an ACK, "INVITE": the one it ends, §9.2, §17.2.3). ParseError on a bad Via."""
        return server_key(request, method) in self._servers

    def holds_response(self, response: Response) -> bool:
        """The client transaction ``response`` belongs to is here (§17.1.3)."""
        return client_key(response) in self._clients

    @property
    def idle(self) -> bool:
        """No transaction is waiting for the TU or the network; the rest only
        linger to absorb retransmissions, which a draining node need not wait for."""
        return not any(map(_busy, self._servers.values())) and not any(
            map(_busy, self._clients.values())
        )

    @property
    def timers(self) -> int:
        """Entries in the timer wheel, stale ones included (for metrics and tests)."""
        return len(self._wheel)

    def limit(
        self,
        max_transactions: int,
        max_per_source: int,
        exempt: Callable[[Address], bool] = lambda source: False,
    ) -> None:
        """Hold at most ``max_transactions`` server transactions, and at most
        ``max_per_source`` from one IP address unless ``exempt(source)`` (a
        trusted peer); past either a request gets a stateless 503 and nothing
        is kept. Lingering transactions count: they are memory all the same."""
        self.max_transactions = max_transactions
        self.max_per_source = max_per_source
        self.exempt = exempt

    def from_source(self, host: str) -> int:
        """The server transactions held for source IP ``host``."""
        return self._sources.get(host, 0)

    def drain(self, retry_after: int = 5, *, admit_in_dialog: bool = True) -> None:
        """Stop creating server transactions for new work: such requests get 503.

        CANCELs for live INVITEs, and in-dialog requests (a To tag: BYE,
        re-INVITE ...) unless ``admit_in_dialog`` is False, are still admitted,
        so calls already up can end cleanly while the node drains.
        """
        self.draining = True
        self.retry_after = retry_after
        self.admit_in_dialog = admit_in_dialog

    def resume(self) -> None:
        """Take new work again after ``drain`` (an admin's resume)."""
        self.draining = False

    # -- messages from the network ---------------------------------------------
    def receive(self, message: Request | Response, source: Address) -> list[Action]:
        """Feed in a parsed message; raises ParseError, before anything is done
        with it, when a header routing or identity reads is bad (answer a
        request with ``answer_malformed``, drop a response)."""
        if isinstance(message, Response):
            validate_response(message)
            return self._receive_response(message, source)
        validate_request(message)
        method = message.method
        if method == "ACK":
            return self._receive_ack(message, source)
        key = server_key(message, method)
        txn = self._servers.get(key)
        if txn is not None:
            return self._retransmitted_request(txn)
        if method == "CANCEL":
            return self._new_cancel(message, key, source)
        if self.draining and not (self.admit_in_dialog and message.to.tag is not None):
            return self._refuse(message, source, "draining", self.retry_after)
        return self._new_server(message, key, source, None)

    def _retransmitted_request(self, txn: ServerTransaction) -> list[Action]:
        # Absorbed; the last response goes out again, except in the INVITE's
        # Accepted state, where the TU retransmits the 2xx itself (RFC 6026 §7.1).
        state = txn.state
        if not txn.data:
            if txn.invite and self.auto_trying and state is State.PROCEEDING:
                return self._send_trying(txn)  # the client is retransmitting already
            return []
        if state is State.ACCEPTED or state is State.CONFIRMED:
            return []
        return [Send(txn.data, txn.dest)]

    def _send_trying(self, txn: ServerTransaction) -> list[Action]:
        txn.deadline = None
        return self._send_response(txn, txn.request.response(100))

    def _new_server(
        self, request: Request, key: Key, source: Address, cancels: ServerTransaction | None
    ) -> list[Action]:
        host = source.host
        held = self._sources.get(host, 0)
        if len(self._servers) >= self.max_transactions:
            return self._refuse(request, source, "transaction_limit", BUSY_RETRY_AFTER)
        if held >= self.max_per_source and not self.exempt(source):
            return self._refuse(request, source, "source_transaction_limit", BUSY_RETRY_AFTER)
        self._sources[host] = held + 1
        stamp_received(request, source)
        method = request.method
        invite = method == "INVITE"
        txn = ServerTransaction(
            key,
            request,
            method,
            State.PROCEEDING if invite else State.TRYING,
            response_address(request, source),
            source=source,
            cancels=cancels,
        )
        self._servers[key] = txn
        deliver = Deliver(request, txn, source)
        if invite and self.auto_trying:
            if self.trying_delay > 0:
                # §17.2.1: a 100 only if the TU is silent for 200 ms; most
                # INVITEs get a 407 or a relayed 180 first, and save a send.
                self._arm(txn, self._clock() + self.trying_delay)
            else:
                actions = self._send_response(txn, request.response(100))
                actions.append(deliver)
                return actions
        return [deliver]

    def _new_cancel(self, request: Request, key: Key, source: Address) -> list[Action]:
        # A CANCEL ends work rather than starting it: admitted while draining
        # whenever it matches a live INVITE.
        invite = self._servers.get(server_key(request, "INVITE"))
        if self.draining and invite is None:
            return self._refuse(request, source, "draining", self.retry_after)
        return self._new_server(request, key, source, invite)

    def _receive_ack(self, request: Request, source: Address) -> list[Action]:
        txn = self._servers.get(server_key(request, "INVITE"))
        if txn is None or txn.state is State.ACCEPTED or txn.state is State.PROCEEDING:
            # The ACK for a 2xx is end-to-end (RFC 6026 §7.1): the TU's business.
            stamp_received(request, source)
            return [Deliver(request, None, source)]
        if txn.state is not State.COMPLETED:
            return []  # Confirmed: a retransmitted ACK, absorbed
        txn.state = State.CONFIRMED
        txn.end = None
        actions: list[Action] = []
        self._linger(txn, 0.0 if txn.reliable else self.t4, actions)  # timer I
        return actions

    def _refuse(self, request: Request, source: Address, reason: str, retry_after: int) -> list[Action]:
        """A stateless 503 (RFC 3261 §21.5.4): no transaction, nothing kept."""
        stamp_received(request, source)
        response = request.response(503, to_tag=new_tag())
        if retry_after:
            response.headers.add("Retry-After", str(retry_after))
        return [Send(response.serialise(), response_address(request, source)), Refused(reason, source)]

    def answer_malformed(
        self, request: Request | None, source: Address, status: int, reason: str, server: str = ""
    ) -> list[Action]:
        """The one stateless answer to a request that did not parse or validate.

        ``request`` is what ``salvage_request`` kept of it (None: not a
        request). It goes back to ``source`` whatever the Via says; nothing is
        answered to an ACK, nor to a request whose top Via names no sender
        (its client could not tell the answer is its own): [] means drop it.
        """
        if request is None or request.method == "ACK":
            return []
        try:
            stamp_received(request, source)
        except ParseError:
            if not _names_its_sender(request):
                return []
        try:
            to_tag = new_tag() if request.to.tag is None else None
        except ParseError:
            to_tag = None  # the bad To itself: answered as it came
        response = request.response(status, reason, to_tag=to_tag)
        if server:
            response.headers.add("Server", server)
        return [Send(response.serialise(), response_address(request, source))]

    def _receive_response(self, response: Response, source: Address) -> list[Action]:
        txn = self._clients.get(client_key(response))
        if txn is None:
            return [DeliverResponse(response, None, source)]
        dest = txn.dest
        moved = source.host != dest.host or source.port != dest.port or source.transport != dest.transport
        if moved and not same_peer(source, dest):
            # Only the peer we sent the request to answers it (over TCP: on a
            # connection to that peer); a branch seen elsewhere proves nothing.
            return [Refused("wrong_source", source)]
        if txn.invite:
            return self._invite_response(txn, response, source)
        return self._non_invite_response(txn, response, source)

    def _invite_response(
        self, txn: ClientTransaction, response: Response, source: Address
    ) -> list[Action]:
        state = txn.state
        status = response.status
        if state is State.CALLING or state is State.PROCEEDING:
            actions: list[Action] = [DeliverResponse(response, txn, source)]
            if status < 200:
                self._invite_proceeding(txn, actions)
            elif status < 300:
                txn.state = State.ACCEPTED  # RFC 6026 §7.2
                txn.cancel_pending = False
                txn.end = None
                self._linger(txn, 64 * self.t1, actions)  # timer M
            else:
                self._invite_completed(txn, response, actions)
            return actions
        if state is State.ACCEPTED and 200 <= status < 300:
            return [DeliverResponse(response, txn, source)]  # from any fork (RFC 6026 §8.4)
        if state is State.COMPLETED and status >= 300 and txn.ack is not None:
            return [Send(txn.ack, txn.dest)]  # a retransmitted final (§17.1.1.2)
        return []

    def _invite_proceeding(self, txn: ClientTransaction, actions: list[Action]) -> None:
        if txn.state is State.CALLING:
            txn.state = State.PROCEEDING
            # §17.1.1.2: no more retransmissions, and timer B only runs in Calling.
            txn.deadline = txn.end = None
        if txn.cancel_pending:
            txn.cancel_pending = False
            actions.extend(self._send_cancel(txn))

    def _invite_completed(
        self, txn: ClientTransaction, response: Response, actions: list[Action]
    ) -> None:
        txn.state = State.COMPLETED
        txn.cancel_pending = False
        txn.end = None
        txn.ack = ack_for(txn.request, response).serialise()
        # Before the TU hears of it: what the TU sends next (a new INVITE to a
        # redirect's number, to the same peer) follows this ACK on the wire.
        actions.insert(0, Send(txn.ack, txn.dest))
        self._linger(txn, 0.0 if txn.reliable else TIMER_D, actions)

    def _non_invite_response(
        self, txn: ClientTransaction, response: Response, source: Address
    ) -> list[Action]:
        state = txn.state
        if state is not State.TRYING and state is not State.PROCEEDING:
            return []  # Completed: retransmitted finals are absorbed (§17.1.2.2)
        actions: list[Action] = [DeliverResponse(response, txn, source)]
        if response.status < 200:
            txn.state = State.PROCEEDING  # timer E goes on, at T2 from its next firing
        else:
            txn.state = State.COMPLETED
            txn.end = None
            self._linger(txn, 0.0 if txn.reliable else self.t4, actions)  # timer K
        return actions

    # -- the TU ----------------------------------------------------------------
    def respond(self, txn: ServerTransaction, response: Response) -> list[Action]:
        """Send a response of the TU through its server transaction."""
        state = txn.state
        status = response.status
        if txn.invite:
            if state is State.PROCEEDING:
                return self._invite_respond(txn, response)
            if state is State.ACCEPTED and 200 <= status < 300:
                return [Send(response.serialise(), txn.dest)]  # RFC 6026 §7.1
            return []
        if state is not State.TRYING and state is not State.PROCEEDING:
            return []  # §17.2.2: later finals from the TU are discarded
        actions = self._send_response(txn, response)
        if status < 200:
            txn.state = State.PROCEEDING
        else:
            txn.state = State.COMPLETED
            self._linger(txn, 0.0 if txn.reliable else 64 * self.t1, actions)  # timer J
        return actions

    def respond_stateless(self, txn: ServerTransaction, response: Response) -> list[Action]:
        """Answer once and forget the transaction (RFC 3261 §16.11 in spirit).

        For answers to requests nobody has authenticated (challenges,
        refusals): no retransmission (timer G), no 32 s linger, no state
        left for a stranger. A retransmitted request gets one more answer,
        one per request received, never more.
        """
        actions: list[Action] = [Send(response.serialise(), txn.dest)]
        self._terminate(txn, actions)
        return actions

    def forget(self, txn: AnyTransaction) -> list[Action]:
        """End ``txn`` at once, sending nothing (the TU cannot answer it)."""
        actions: list[Action] = []
        if txn.state is not State.TERMINATED:
            self._terminate(txn, actions)
        return actions

    def _invite_respond(self, txn: ServerTransaction, response: Response) -> list[Action]:
        actions = self._send_response(txn, response)
        status = response.status
        if status < 200:
            return actions
        if status < 300:
            txn.state = State.ACCEPTED  # RFC 6026 §7.1
            self._linger(txn, 64 * self.t1, actions)  # timer L
            return actions
        txn.state = State.COMPLETED
        now = self._clock()
        txn.end = now + 64 * self.t1  # timer H
        if txn.reliable:
            self._arm(txn, txn.end)
        else:
            txn.interval = self.t1  # timer G
            self._arm(txn, now + self.t1)
        return actions

    def _send_response(self, txn: ServerTransaction, response: Response) -> list[Action]:
        txn.data = response.serialise()
        return [Send(txn.data, txn.dest)]

    def request(self, request: Request, dest: Address) -> tuple[ClientTransaction, list[Action]]:
        """Send a request in a new client transaction; its top Via must carry the branch.

        The ACK for a 2xx is no transaction (§17.1.1.3): send it with
        ``send_stateless``. An ACK, or a branch missing or in use, raises
        LocalProtocolError: the TU's bug, not the peer's.
        """
        if request.method == "ACK":
            raise LocalProtocolError("ACK is sent without a client transaction")
        key = client_key(request)
        if key[0] is None:
            raise LocalProtocolError("request without a Via branch")
        if key in self._clients:
            raise LocalProtocolError("Via branch already in use by a client transaction")
        method = request.method
        state = State.CALLING if method == "INVITE" else State.TRYING
        txn = ClientTransaction(key, request, method, state, dest, data=request.serialise())
        self._clients[key] = txn
        self._start_client(txn)
        return txn, [Send(txn.data, dest, txn)]

    def transport_error(self, txn: ClientTransaction, error: str) -> None:
        """The shell could not send ``txn``'s request (no listener for its
        transport, an address it cannot reach, a send that raised).

        §17.1.4: the TU is told and the transaction ends; §16.9: a transport
        error counts as a 503. At the next ``expire`` the TU gets a 503 and
        ``Terminated``, not a 408 32 s later. Never at once: the TU may be in
        the middle of ``request`` and not have the transaction yet.
        """
        if txn.error is None and txn.state in _WORKING:
            txn.error = error
            self._arm(txn, self._clock())

    def _start_client(self, txn: ClientTransaction) -> None:
        now = self._clock()
        txn.end = now + 64 * self.t1  # timer B or F
        if txn.reliable:
            self._arm(txn, txn.end)
        else:
            txn.interval = self.t1  # timer A or E
            self._arm(txn, now + self.t1)

    def send_stateless(self, message: Request | Response, dest: Address) -> list[Action]:
        return [Send(message.serialise(), dest)]

    def cancel(self, txn: ClientTransaction) -> tuple[ClientTransaction | None, list[Action]]:
        """CANCEL an INVITE client transaction (§9.1).

        Before any 1xx the CANCEL waits for one (it goes out in the actions of
        that ``receive``; None is returned now); after a final response, or a
        second time, this does nothing.
        """
        if not txn.invite or txn.cancel is not None:
            return txn.cancel, []
        if txn.state is State.CALLING:
            txn.cancel_pending = True
            return None, []
        if txn.state is not State.PROCEEDING:
            return None, []
        actions = self._send_cancel(txn)
        return txn.cancel, actions

    def abandon(self, txn: ClientTransaction) -> None:
        """Send a client transaction's request no more: the TU gave up on it (it
        failed the INVITE over to another hop, or sent a newer probe). It stays
        until its timeout (timer B or F, or §9.1's limit after a CANCEL) to take
        a late response, which is still delivered (a 2xx, which the TU ACKs and
        ends, RFC 3261 §13.2.2.4), and a CANCEL asked for still goes on a 1xx.
        A retransmission that reached a hop that came back would start a call
        nobody waits for."""
        if txn.end is not None and txn.state in _WORKING:
            self._arm(txn, txn.end)

    def retransmit_2xx(self, txn: ServerTransaction) -> None:
        """Send the 2xx an INVITE server transaction answered with again, T1
        doubling to T2, until ``stop_2xx`` (its ACK came); over reliable
        transports too, as hops further on may be UDP (RFC 3261 §13.3.1.4, the
        UAS core's duty in the Accepted state of RFC 6026 §7.1, run on the
        layer's timers). With no ACK 64*T1 after the 2xx the TU gets TimedOut
        (as on timer H), then Terminated."""
        if not txn.invite or txn.state is not State.ACCEPTED or txn.end is not None:
            return
        now = self._clock()
        txn.interval = self.t1
        txn.end = now + 64 * self.t1  # when timer L would have ended it
        self._arm(txn, now + self.t1)

    def stop_2xx(self, txn: ServerTransaction) -> None:
        """No more 2xx from ``retransmit_2xx`` (the ACK came, or the TU ended the
        dialog); the transaction lingers until timer L, as without them."""
        if txn.state is State.ACCEPTED and txn.end is not None:
            at, txn.end = txn.end, None
            self._arm(txn, at)

    def _send_cancel(self, invite: ClientTransaction) -> list[Action]:
        request = cancel_for(invite.request)
        cancel, actions = self.request(request, invite.dest)
        cancel.cancels = invite
        invite.cancel = cancel
        # §9.1: with no final response 64*T1 after the CANCEL, the INVITE is given up.
        invite.end = self._clock() + 64 * self.t1
        self._arm(invite, invite.end)
        return actions

    # -- time --------------------------------------------------------------------
    def expire(self, now: float | None = None) -> list[Action]:
        """Run the timers due at ``now`` (default: the clock)."""
        if now is None:
            now = self._clock()
        actions: list[Action] = []
        limit = now + _EPSILON
        for txn in self._wheel.expire(now):
            deadline = txn.deadline
            if deadline is None or deadline > limit:
                continue  # a stale entry: the transaction has moved on
            self._fire(txn, deadline, now, limit, actions)
        return actions

    def _fire(
        self, txn: AnyTransaction, deadline: float, now: float, limit: float, actions: list[Action]
    ) -> None:
        txn.deadline = None
        if type(txn) is ClientTransaction and txn.error is not None:
            actions.append(DeliverResponse(_unreachable(txn), txn, txn.dest))
            self._terminate(txn, actions)
            return
        if txn.state is State.PROCEEDING and isinstance(txn, ServerTransaction):
            if not txn.data:  # the TU stayed silent (§17.2.1)
                actions.extend(self._send_trying(txn))
            return
        end = txn.end
        if end is None:
            self._terminate(txn, actions)  # timer D, I, J, K, L or M
        elif end <= limit:
            # Timer B, F or H; also when a late tick finds it due together with
            # a retransmission, which would be pointless now.
            actions.append(TimedOut(txn))
            self._terminate(txn, actions)
        else:
            client = txn if type(txn) is ClientTransaction else None
            actions.append(Send(txn.data, txn.dest, client))  # timer A, E or G
            txn.interval = self._next_interval(txn)
            at = deadline + txn.interval
            if at <= now:
                at = now + txn.interval  # the tick ran late; do not burst to catch up
            self._arm(txn, min(at, end))

    def _next_interval(self, txn: AnyTransaction) -> float:
        if isinstance(txn, ClientTransaction):
            if txn.invite:
                return txn.interval * 2  # timer A
            if txn.state is State.PROCEEDING:
                return self.t2  # §17.1.2.2
        return min(txn.interval * 2, self.t2)  # timer E or G

    def _arm(self, txn: AnyTransaction, deadline: float) -> None:
        txn.deadline = deadline
        self._wheel.schedule(deadline, txn)

    def _linger(self, txn: AnyTransaction, duration: float, actions: list[Action]) -> None:
        """Keep a finished transaction for ``duration`` to absorb retransmissions;
        meanwhile it matches by its key and answers with its bytes, so its
        request keeps only its text (``Message.release``)."""
        if duration <= 0.0:
            self._terminate(txn, actions)
        else:
            txn.request.release()
            self._arm(txn, self._clock() + duration)

    def _terminate(self, txn: AnyTransaction, actions: list[Action]) -> None:
        txn.state = State.TERMINATED
        txn.deadline = txn.end = None
        if isinstance(txn, ClientTransaction):
            if self._clients.get(txn.key) is txn:
                del self._clients[txn.key]
        elif self._servers.get(txn.key) is txn:
            del self._servers[txn.key]
            host = txn.source.host
            held = self._sources[host] - 1
            if held:
                self._sources[host] = held
            else:
                del self._sources[host]
        actions.append(Terminated(txn))


__all__ = [
    "Action",
    "AnyTransaction",
    "ClientTransaction",
    "Deliver",
    "DeliverResponse",
    "Send",
    "Refused",
    "ServerTransaction",
    "State",
    "T1",
    "T2",
    "T4",
    "Terminated",
    "TimedOut",
    "Transaction",
    "TransactionLayer",
    "ack_for",
    "cancel_for",
    "client_key",
    "same_peer",
    "server_key",
]

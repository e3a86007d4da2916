"""The ACR's router as a proxy with serial failover: a fake node records what it
sends, a fake clock drives the PDD limit; the decision, the live state and the
CDR writer are stand-ins with the contract's shape."""

from __future__ import annotations

from dataclasses import dataclass, field

from acr.router import MAX_CALL, AcrRouter
from sipline.carriers.model import FINAL_CODES, Carrier, Did, Gateway, Rate, RoutingProfile
from sipline.config import Settings
from sipline.sip.address import Address
from sipline.sip.message import Request, Response, parse_message
from sipline.sip.transaction import ClientTransaction, ServerTransaction, State, client_key
from tests.support import FakeClock

US = Address("UDP", "127.0.0.1", 5080)
B2BUA = Address("UDP", "127.0.0.1", 5070)
STRANGER = Address("UDP", "192.0.2.66", 5060)

CHEAP = Carrier("cheap", (Gateway("cheap", "127.0.0.2", 5060), Gateway("cheap", "127.0.0.2", 5062)))
MID = Carrier("mid", (Gateway("mid", "127.0.0.3", 5060),), capacity=1)
DEAR = Carrier("dear", (Gateway("dear", "127.0.0.4", 5060),))
CARRIERS = [CHEAP, MID, DEAR]
RATES = {"cheap": 0.01, "mid": 0.02, "dear": 0.05}
HOME = "127.0.0.9:5060"
BACKUP = "127.0.0.10:5060"


# -- stand-ins ----------------------------------------------------------------------------
@dataclass
class Candidate:
    carrier: Carrier
    rate: Rate
    prefix: str
    gateways: tuple[Gateway, ...]


@dataclass
class Decision:
    number: str
    prefix: str
    profile: RoutingProfile
    candidates: list[Candidate]

    def explain(self) -> str:
        return " > ".join(c.carrier.name for c in self.candidates)


class Table:
    def __init__(self, order: list[Carrier], profile: RoutingProfile | None = None) -> None:
        self.order = order
        self.profile = profile or RoutingProfile()

    def decide(self, number: str, now: float) -> Decision:
        if not number.startswith("44"):
            return Decision(number, "", self.profile, [])
        candidates = [
            Candidate(c, Rate(c.name, "44", RATES[c.name], 0.0, 6, 6), "44", c.gateways)
            for c in self.order
        ]
        return Decision(number, "44", self.profile, candidates)


@dataclass
class Health:
    down: set[str] = field(default_factory=set)
    failures: list[tuple[str, int]] = field(default_factory=list)
    successes: list[str] = field(default_factory=list)

    def gateway_up(self, address: str, now: float) -> bool:
        return address not in self.down

    def passive_failure(self, address: str, code: int, now: float) -> bool:
        self.failures.append((address, code))
        return False

    def passive_success(self, address: str, now: float) -> None:
        self.successes.append(address)


@dataclass
class Counters:
    active: dict[str, int] = field(default_factory=dict)

    def try_start(self, carrier: Carrier, now: float) -> bool:
        count = self.active.get(carrier.name, 0)
        if carrier.capacity is not None and count >= carrier.capacity:
            return False
        self.active[carrier.name] = count + 1
        return True

    def admit(self, carrier: Carrier, now: float) -> bool:
        return self.try_start(carrier, now)

    def end(self, name: str) -> None:
        self.active[name] -= 1

    def resume(self, name: str) -> None:
        self.active[name] = self.active.get(name, 0) + 1


@dataclass
class Stats:
    attempts: list = field(default_factory=list)
    ends: list = field(default_factory=list)
    media_calls: list = field(default_factory=list)

    def record_attempt(self, attempt: object) -> None:
        self.attempts.append(attempt)

    def record_call_end(self, carrier: str, prefix: str, duration: float, **kw: object) -> None:
        self.ends.append((carrier, prefix, duration))
        self.media_calls.append(kw.get("call_id"))


@dataclass
class Live:
    stats: Stats = field(default_factory=Stats)
    health: Health = field(default_factory=Health)
    counters: Counters = field(default_factory=Counters)


class Cdrs(list):
    """The journal's part (acr.journal.Journal): every CDR lands in the list; a record
    is on disk at once, unless ``hold`` keeps its ``done`` in ``waiting``."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list = []
        self.hold = False
        self.waiting: list = []

    def answered(self, cdr: object, media_call: object, done) -> None:
        self.answers.append(cdr)
        self._done(done)

    def ended(self, cdr: object, done=None) -> None:
        self.append(cdr)
        self._done(done)

    def add(self, cdr: object) -> None:
        self.append(cdr)

    def _done(self, done) -> None:
        if done is not None:
            self.waiting.append(done) if self.hold else done(True)

    def on_disk(self) -> None:
        waiting, self.waiting = self.waiting, []
        for done in waiting:
            done(True)


class FakeNode:
    """Records what the router asks of the node; no sockets, no transaction timers."""

    def __init__(self) -> None:
        self.sent: list[ClientTransaction] = []
        self.upstream: list[Response] = []
        self.cancelled: list[ClientTransaction] = []
        self.stateless: list[tuple[Request | Response, Address]] = []

    def local_address(self, transport: str) -> Address:
        if transport != "UDP":
            raise LookupError(transport)
        return US

    def via_address(self, transport: str) -> Address:
        return self.local_address(transport)

    def worker_ports(self) -> tuple[int, ...]:
        return ()

    def respond_stateless(self, txn: ServerTransaction, response: Response) -> None:
        self.upstream.append(response)
        txn.state = State.TERMINATED

    def respond(self, txn: ServerTransaction, response: Response) -> None:
        self.upstream.append(response)
        if response.status >= 300:
            txn.state = State.COMPLETED
        elif response.status >= 200:
            txn.state = State.ACCEPTED

    def send_request(self, request: Request, dest: Address) -> ClientTransaction:
        state = State.CALLING if request.method == "INVITE" else State.TRYING
        txn = ClientTransaction(client_key(request), request, request.method, state, dest)
        self.sent.append(txn)
        return txn

    def send_stateless(self, message: Request | Response, dest: Address) -> None:
        self.stateless.append((message, dest))

    def cancel(self, txn: ClientTransaction) -> None:
        self.cancelled.append(txn)

    @property
    def invites(self) -> list[ClientTransaction]:
        return [t for t in self.sent if t.method == "INVITE"]

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.upstream]



@dataclass
class Acr:
    router: AcrRouter
    node: FakeNode
    live: Live
    cdrs: Cdrs
    clock: FakeClock

    def invite(
        self,
        uri: str = "sip:+442071234567@127.0.0.1:5080",
        source: Address = B2BUA,
        extra: str = "X-Sipline-Account: acme\r\n",
        call_id: str = "call-1",
    ) -> ServerTransaction:
        request = message(
            f"INVITE {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK{call_id};rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:alice@example.com>;tag=a1\r\n"
            f"To: <{uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:b2bua@127.0.0.1:5070>\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        )
        assert isinstance(request, Request)
        txn = ServerTransaction(
            ("server", call_id), request, "INVITE", State.PROCEEDING, source, source=source
        )
        self.router.on_request(self.node, request, txn, source)  # type: ignore[arg-type]
        return txn

    def answer(self, txn: ClientTransaction, status: int, tag: str = "c1") -> Response:
        request = txn.request
        response = request.response(status, to_tag=tag)
        response.headers.add("Contact", f"<sip:carrier@{txn.dest.host}:{txn.dest.port}>")
        if status < 300:
            for value in request.headers.get_all("record-route"):
                response.headers.add("Record-Route", value)
        response = message(response.serialise().decode())  # as it comes off the wire
        self.router.on_response(self.node, response, txn, txn.dest)  # type: ignore[arg-type]
        return response

    def route(self, call_id: str = "call-1") -> str:
        """Our Record-Route in the call's route set, as the B2BUA sends it back."""
        return f"<sip:127.0.0.1:5080;lr{self.router.signer.sign('', call_id)}>"

    def bye(self, call_id: str = "call-1") -> None:
        """The B2BUA hangs up the answered call."""
        bye = message(
            "BYE sip:carrier@127.0.0.2:5060 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye\r\n"
            f"Route: {self.route(call_id)}\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:alice@example.com>;tag=a1\r\n"
            "To: <sip:+442071234567@127.0.0.1:5080>;tag=c1\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        )
        server = ServerTransaction(("s", "bye"), bye, "BYE", State.TRYING, B2BUA, source=B2BUA)
        self.router.on_request(self.node, bye, server, B2BUA)  # type: ignore[arg-type]

    def expire(self, seconds: float) -> None:
        self.clock.now += seconds
        self.router.on_tick(self.node, self.clock.now)  # type: ignore[arg-type]


def message(text: str) -> Request | Response:
    return parse_message(text.encode())


def acr(
    order: list[Carrier] | None = None,
    profile: RoutingProfile | None = None,
    pdd_timeout: float = 5.0,
) -> Acr:
    settings = Settings(
        node={"name": "acr-test"},
        sip={"host": US.host, "port": US.port},
        acr={"trusted": ["127.0.0.1:5070"], "pdd_timeout": pdd_timeout},
    )
    live, cdrs, clock = Live(), Cdrs(), FakeClock()
    router = AcrRouter(
        settings,
        "primary",
        Table(order if order is not None else CARRIERS, profile),
        live,
        cdrs,
        CARRIERS,
        [Did("3312345678", HOME, (BACKUP,))],
        clock=clock,
        monotonic=clock,
    )
    return Acr(router, FakeNode(), live, cdrs, clock)


def dests(node: FakeNode) -> list[str]:
    return [f"{t.dest.host}:{t.dest.port}" for t in node.invites]


# -- who may call -------------------------------------------------------------------------
def test_a_trusted_peers_call_goes_to_the_first_carrier_record_routed_without_our_header() -> None:
    a = acr()
    a.invite()
    [sent] = a.node.invites
    request = sent.request
    assert request.uri == "sip:+442071234567@127.0.0.2:5060"
    assert sent.dest == Address("UDP", "127.0.0.2", 5060)
    # Signed for this call: in-dialog requests must come back along it.
    assert request.headers.get_all("record-route") == [a.route()]
    assert request.via.host == "127.0.0.1" and request.via.port == 5080
    assert request.max_forwards == 69
    assert "x-sipline-account" not in request.headers


def test_a_stranger_gets_403_and_nothing_is_sent() -> None:
    a = acr()
    a.invite(source=STRANGER)
    assert a.node.statuses == [403] and not a.node.sent


def test_in_a_dialog_only_our_signed_record_route_takes_a_request_to_a_carrier() -> None:
    # A phone on the box (a "known host") writes a To tag and names a carrier's gateway.
    a = acr()
    for route in (
        "",  # no Route: a dialog we did not record-route
        "Route: <sip:127.0.0.1:5080;lr>\r\n",  # ours, unsigned
        f"Route: {a.route('another-call')}\r\n",  # signed, for another dialog
    ):
        invite = message(
            "INVITE sip:+442071234567@127.0.0.2:5060 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKfraud;rport\r\n"
            f"{route}Max-Forwards: 70\r\n"
            "From: <sip:alice@example.com>;tag=a1\r\n"
            "To: <sip:+442071234567@127.0.0.2>;tag=made-up\r\n"
            "Call-ID: fraud\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        assert isinstance(invite, Request)
        source = Address("UDP", "127.0.0.1", 40000)
        txn = ServerTransaction(("s", route), invite, "INVITE", State.PROCEEDING, source, source=source)
        a.router.on_request(a.node, invite, txn, source)  # type: ignore[arg-type]
    assert a.node.statuses == [403, 403, 403] and not a.node.sent
    assert a.router.counts["foreign_dialogs"] == 1 and a.router.counts["forged_routes"] == 2


def test_a_number_nobody_routes_gets_404_and_no_number_484() -> None:
    a = acr()
    a.invite("sip:+12125551234@127.0.0.1:5080")
    a.invite("sip:bob@127.0.0.1:5080", call_id="call-2")
    assert a.node.statuses == [404, 484]
    assert not a.node.sent


def test_a_tel_uri_is_routed_by_its_digits() -> None:
    a = acr()
    a.invite("tel:+44-20-7123-4567")
    [sent] = a.node.invites
    assert sent.request.uri == "sip:+44-20-7123-4567@127.0.0.2:5060"


# -- serial failover ------------------------------------------------------------------------
def test_a_503_fails_over_to_the_next_gateway_then_the_next_carrier() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 503)
    a.answer(a.node.invites[1], 500)
    assert dests(a.node) == ["127.0.0.2:5060", "127.0.0.2:5062", "127.0.0.3:5060"]
    assert a.live.health.failures == [("127.0.0.2:5060", 503)]
    assert [x.code for x in a.live.stats.attempts] == [503, 500]
    assert a.node.statuses == []  # the hunt goes on: nothing upstream yet


def test_the_answer_goes_upstream_and_the_bye_writes_the_billed_cdr() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 180)
    a.clock.now += 2
    a.answer(a.node.invites[0], 200)
    assert a.node.statuses == [180, 200]
    [attempt] = a.live.stats.attempts
    assert attempt.answered and attempt.pdd == 0.0 and attempt.carrier == "cheap"
    assert a.live.counters.active == {"cheap": 1}
    assert not a.cdrs  # not before the BYE
    a.clock.now += 61
    a.bye()
    forwarded = a.node.sent[-1]
    assert forwarded.method == "BYE" and forwarded.dest == Address("UDP", "127.0.0.2", 5060)
    [cdr] = a.cdrs
    assert (cdr.carrier, cdr.gateway, cdr.account, cdr.callee) == (
        "cheap",
        "127.0.0.2:5060",
        "acme",
        "442071234567",
    )
    assert cdr.final_code == 200 and cdr.billed_seconds == 66  # 61 s in 6/6 steps
    assert cdr.cost == round(66 / 60 * 0.01, 6)
    assert a.live.counters.active == {"cheap": 0}
    assert a.live.stats.ends == [("cheap", "44", 61.0)]
    assert a.live.stats.media_calls == [None]  # not anchored: no relay figures to fetch


def in_dialog(a: Acr, method: str, cseq: int = 2) -> ClientTransaction:
    """The B2BUA sends an in-dialog request of the answered call; what we relay of it."""
    request = message(
        f"{method} sip:carrier@127.0.0.2:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{method}{cseq}\r\n"
        f"Route: {a.route()}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:+442071234567@127.0.0.1:5080>;tag=c1\r\n"
        f"Call-ID: call-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    state = State.PROCEEDING if method == "INVITE" else State.TRYING
    server = ServerTransaction(("s", method), request, method, state, B2BUA, source=B2BUA)
    a.router.on_request(a.node, request, server, B2BUA)  # type: ignore[arg-type]
    return a.node.sent[-1]


def test_a_call_never_hung_up_is_swept_after_max_call_and_marked_so() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 200)
    a.expire(MAX_CALL + 1)
    [cdr] = a.cdrs
    assert cdr.final_code == 200 and cdr.extra == {"ended": "swept"}
    assert cdr.end - cdr.answer >= MAX_CALL  # billed as it stood, for billing to tell
    assert a.live.counters.active == {"cheap": 0}


def test_a_481_or_408_to_a_relayed_in_dialog_request_closes_the_cdr_then() -> None:
    for status in (481, 408):
        a = acr()
        a.invite()
        a.answer(a.node.invites[0], 200)
        a.clock.now += 30
        info = in_dialog(a, "INFO")
        response = info.request.response(status)
        a.router.on_response(a.node, response, info, info.dest)  # type: ignore[arg-type]
        assert a.node.statuses[-1] == status  # relayed as ever
        [cdr] = a.cdrs
        assert cdr.final_code == 200 and cdr.end - cdr.answer == 30
        assert cdr.extra == {"ended": str(status)}
        a.expire(MAX_CALL + 1)
        assert len(a.cdrs) == 1  # nothing left to sweep


def test_a_relayed_in_dialog_request_timing_out_closes_the_cdr() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 200)
    reinvite = in_dialog(a, "INVITE")
    a.router.on_timeout(a.node, reinvite)  # type: ignore[arg-type]
    [cdr] = a.cdrs
    assert cdr.extra == {"ended": "408"}


def test_other_failures_to_in_dialog_requests_leave_the_call_up() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 200)
    info = in_dialog(a, "INFO")
    a.router.on_response(a.node, info.request.response(488), info, info.dest)  # type: ignore[arg-type]
    assert not a.cdrs
    a.bye()
    [cdr] = a.cdrs
    assert cdr.extra == {}


def test_the_relays_name_of_the_calls_media_is_taken_from_the_b2bua_and_stripped() -> None:
    a = acr()
    a.invite(extra="X-Sipline-Account: acme\r\nX-Sipline-Media-Call: a-leg-77@10.0.0.1\r\n")
    [sent] = a.node.invites
    assert "x-sipline-media-call" not in sent.request.headers
    a.answer(sent, 200)
    a.bye()
    assert a.live.stats.media_calls == ["a-leg-77@10.0.0.1"]  # the relay's key, not ours


def test_a_malformed_media_call_header_is_dropped_not_fatal() -> None:
    a = acr()
    a.invite(extra=f"X-Sipline-Media-Call: {'x' * 300}\r\n")
    [sent] = a.node.invites
    assert "x-sipline-media-call" not in sent.request.headers
    a.answer(sent, 200)
    a.bye()
    assert a.live.stats.media_calls == [None]


def test_a_final_code_ends_the_hunt_and_goes_upstream_with_a_cdr() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 486)
    assert len(a.node.invites) == 1
    assert a.node.statuses == [486]
    [cdr] = a.cdrs
    assert cdr.final_code == 486 and cdr.cost == 0 and cdr.carrier == "cheap"
    assert a.live.counters.active == {"cheap": 0}


def test_the_profiles_final_codes_decide() -> None:
    a = acr(profile=RoutingProfile(final_codes=frozenset((503,))))
    a.invite()
    a.answer(a.node.invites[0], 503)
    assert a.node.statuses == [500]  # a 503 upstream would make the B2BUA try the other ACR
    assert FINAL_CODES != frozenset((503,))


def test_every_hop_failing_answers_the_best_failure() -> None:
    a = acr(order=[MID, DEAR])
    a.invite()
    a.answer(a.node.invites[0], 503)
    a.answer(a.node.invites[1], 480)
    assert a.node.statuses == [480]
    [cdr] = a.cdrs
    assert cdr.carrier == "dear" and cdr.final_code == 480


def test_no_provisional_within_the_pdd_limit_cancels_and_tries_the_next() -> None:
    a = acr(order=[MID, DEAR], pdd_timeout=3.0)
    a.invite()
    a.expire(2.9)
    assert len(a.node.invites) == 1
    a.expire(0.2)
    first = a.node.invites[0]
    assert a.node.cancelled == [first]
    assert dests(a.node) == ["127.0.0.3:5060", "127.0.0.4:5060"]
    assert a.live.health.failures == [("127.0.0.3:5060", 408)]
    assert a.live.stats.attempts[0].code == 408 and a.live.stats.attempts[0].pdd is None
    # A late 180 from the first carrier goes nowhere.
    a.answer(first, 180)
    assert a.node.statuses == []


def test_a_provisional_in_time_stops_the_pdd_limit() -> None:
    a = acr(pdd_timeout=3.0)
    a.invite()
    a.expire(1.0)
    a.answer(a.node.invites[0], 183)
    a.expire(10.0)
    assert len(a.node.invites) == 1 and not a.node.cancelled
    assert a.node.statuses == [183]


def test_a_100_trying_does_not_count_as_a_provisional() -> None:
    a = acr(order=[MID, DEAR], pdd_timeout=3.0)
    a.invite()
    a.answer(a.node.invites[0], 100)
    a.expire(3.1)
    assert len(a.node.invites) == 2


def test_a_late_2xx_from_an_abandoned_attempt_is_acked_and_hung_up() -> None:
    a = acr(order=[MID, DEAR], pdd_timeout=3.0)
    a.invite()
    a.expire(3.1)
    a.answer(a.node.invites[0], 200, tag="late")
    [(ack, where)] = a.node.stateless
    assert isinstance(ack, Request) and ack.method == "ACK" and where.host == "127.0.0.3"
    assert a.node.sent[-1].method == "BYE" and a.node.sent[-1].dest.host == "127.0.0.3"
    assert a.node.statuses == []


def bye_answer(a: Acr, status: int = 200) -> None:
    """The carrier answers the BYE we sent it."""
    bye = a.node.sent[-1]
    assert bye.method == "BYE"
    a.router.on_response(a.node, bye.request.response(status), bye, bye.dest)  # type: ignore[arg-type]


def test_a_late_2xx_after_the_pdd_limit_is_billed_as_the_carrier_bills_it() -> None:
    a = acr(order=[MID, DEAR], pdd_timeout=3.0)
    a.invite()
    a.expire(3.1)
    a.answer(a.node.invites[1], 486)  # the next carrier ends the hunt
    a.clock.now += 1
    a.answer(a.node.invites[0], 200, tag="late")  # the first one answers after all
    late_answer = a.clock.now
    a.clock.now += 0.5
    bye_answer(a)
    unanswered, late = a.cdrs
    assert (unanswered.carrier, unanswered.final_code, unanswered.cost) == ("dear", 486, 0)
    assert (late.call_id, late.carrier, late.gateway) == ("call-1", "mid", "127.0.0.3:5060")
    assert late.start == late.answer == late_answer and late.end == late_answer + 0.5
    assert late.start != unanswered.start  # the CDR table's key: call_id, node, start
    assert late.final_code == 486  # what the caller saw
    assert late.billed_seconds == 6 and late.cost == round(6 / 60 * 0.02, 6)
    assert late.extra == {"answer": "late"}
    # A retransmitted 200 is ACKed again, not hung up (or billed) twice.
    a.answer(a.node.invites[0], 200, tag="late")
    assert len(a.node.stateless) == 2 and len(a.cdrs) == 2
    assert [t.method for t in a.node.sent].count("BYE") == 1


def test_a_late_2xx_whose_bye_gets_no_answer_ends_when_the_bye_was_sent() -> None:
    a = acr(order=[MID], pdd_timeout=3.0)
    a.invite()
    a.expire(3.1)  # no hop left: 408 upstream
    a.answer(a.node.invites[0], 200, tag="late")
    sent = a.clock.now
    a.clock.now += 32
    a.router.on_timeout(a.node, a.node.sent[-1])  # type: ignore[arg-type]
    a.router.on_terminated(a.node, a.node.sent[-1])  # type: ignore[arg-type]
    _, late = a.cdrs
    assert late.answer == late.end == sent and late.final_code == 408 and late.cost == 0


def test_a_200_crossing_the_callers_cancel_is_billed_with_the_487() -> None:
    a = acr()
    server = a.invite()
    a.answer(a.node.invites[0], 180)
    cancel(a, server)
    a.clock.now += 0.2
    a.answer(a.node.invites[0], 200)  # crossed our CANCEL
    answered = a.clock.now
    a.clock.now += 7
    bye_answer(a)
    assert a.node.statuses == [180, 200, 487]
    first, late = a.cdrs
    assert first.final_code == 487 and first.cost == 0
    assert late.final_code == 487 and late.answer == answered and late.end == answered + 7
    assert late.billed_seconds == 12 and late.cost == round(12 / 60 * 0.01, 6)


def test_a_carrier_without_headroom_or_a_gateway_down_is_passed_over() -> None:
    a = acr(order=[MID, DEAR])
    a.live.counters.active["mid"] = 1  # at its capacity of 1
    a.invite()
    assert dests(a.node) == ["127.0.0.4:5060"]
    b = acr()
    b.live.health.down.add("127.0.0.2:5060")
    b.invite()
    assert dests(b.node) == ["127.0.0.2:5062"]


def test_no_carrier_available_at_all_answers_480() -> None:
    a = acr(order=[MID])
    a.live.counters.active["mid"] = 1
    a.invite()
    assert a.node.statuses == [480] and not a.cdrs


# -- CANCEL ---------------------------------------------------------------------------------
def cancel(a: Acr, server: ServerTransaction) -> None:
    """The B2BUA CANCELs the call's INVITE."""
    cancel = message(
        "CANCEL sip:+442071234567@127.0.0.1:5080 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcall-1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:+442071234567@127.0.0.1:5080>\r\n"
        "Call-ID: call-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    txn = ServerTransaction(("c",), cancel, "CANCEL", State.TRYING, B2BUA, source=B2BUA)
    txn.cancels = server
    a.router.on_request(a.node, cancel, txn, B2BUA)  # type: ignore[arg-type]


def test_cancel_from_upstream_cancels_the_attempt_and_answers_487() -> None:
    a = acr()
    server = a.invite()
    a.answer(a.node.invites[0], 180)
    cancel(a, server)
    assert a.node.statuses == [180, 200, 487]
    assert a.node.cancelled == [a.node.invites[0]]
    # The carrier's 487 to our CANCEL ends nothing more.
    a.answer(a.node.invites[0], 487)
    assert len(a.node.invites) == 1 and a.node.statuses == [180, 200, 487]
    [cdr] = a.cdrs
    assert cdr.final_code == 487
    assert a.live.counters.active == {"cheap": 0}


# -- inbound --------------------------------------------------------------------------------
def test_a_carriers_call_to_a_did_goes_to_its_home_proxy_then_the_backup() -> None:
    a = acr()
    a.invite("sip:+3312345678@127.0.0.1:5080", source=Address("UDP", "127.0.0.3", 5060))
    a.answer(a.node.invites[0], 503)
    assert dests(a.node) == [HOME, BACKUP]
    assert a.node.invites[0].request.uri == "sip:+3312345678@127.0.0.9:5060"
    a.answer(a.node.invites[1], 200)
    assert a.node.statuses == [200]
    assert not a.cdrs and not a.live.stats.attempts  # inbound calls feed no carrier statistics


def test_a_home_proxy_down_by_its_probes_is_tried_after_its_backup() -> None:
    a = acr()
    a.live.health.down.add(HOME)
    a.invite("sip:3312345678@127.0.0.1:5080", source=Address("UDP", "127.0.0.2", 5062))
    assert dests(a.node) == [BACKUP]


def test_a_carrier_cannot_speak_for_our_side_with_internal_headers() -> None:
    a = acr()
    a.invite(
        "sip:3312345678@127.0.0.1:5080",
        source=Address("UDP", "127.0.0.2", 5060),
        extra="X-Sipline-Account: acme\r\nX-Sipline-Media-Call: spoofed\r\n"
        "x-sipline-future: whatever\r\nPath: <sip:127.0.0.1:5070;lr>\r\n"
        "P-Asserted-Identity: <tel:+33199999999>\r\n",
    )
    forwarded = a.node.invites[0].request.headers
    assert not [name for name, _ in forwarded if name.lower().startswith("x-sipline-")]
    assert "path" not in forwarded
    # The carrier's word on who calls goes on (its gateway is configured by address).
    assert forwarded.get("p-asserted-identity") == "<tel:+33199999999>"


def test_a_carrier_calling_an_unknown_did_gets_404() -> None:
    a = acr()
    a.invite("sip:3399999999@127.0.0.1:5080", source=Address("UDP", "127.0.0.2", 5060))
    assert a.node.statuses == [404]


def test_a_carriers_2xx_to_an_invite_sent_before_a_restart_is_hung_up_as_a_ghost_not_relayed() -> None:
    before = acr(order=[MID])
    before.invite()
    txn = before.node.invites[0]
    response = txn.request.response(200, to_tag="c1")
    response.headers.add("Contact", "<sip:carrier@127.0.0.3:5060>")
    response = message(response.serialise().decode())
    after = acr(order=[MID])  # the node restarted: no transaction, no call
    after.router.on_response(after.node, response, None, txn.dest)  # type: ignore[arg-type]
    [(ack, where)] = after.node.stateless  # nothing upstream: the B2BUA fails over instead
    assert isinstance(ack, Request) and ack.method == "ACK" and where == txn.dest
    bye = after.node.sent[-1]
    assert bye.method == "BYE" and bye.dest == txn.dest
    assert bye.request.headers.get("reason") == 'SIP;cause=200;text="ghost"'
    assert after.router.counts["strays_hung_up"] == 1 and after.cdrs == []

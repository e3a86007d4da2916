"""The router in a real node on 127.0.0.1, spoken to by phones made of raw sockets.

Calls are set up, forked, cancelled and torn down through the proxy; every
check is on what the phones (and the stand-in B2BUA) see on the wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from proxy.authn import Authenticator
from proxy.location import Binding, Location
from proxy.router import Router
from proxy.subscribers import ServedDomains, SubscriberDirectory
from sipline.config import Settings
from sipline.net.node import Node
from sipline.sip.dialog import Dialog
from sipline.sip.message import Request, Response, parse_message
from sipline.sip.transaction import TransactionLayer
from tests.net.test_node import free_port, on_uvloop
from tests.proxy.phone import authorization, subscriber
from tests.proxy.phones import HOST, StandInRegistrar, TcpPhone, UdpPhone

PRIVATE = "192.168.1.50:5060"  # a Contact nobody can reach: only the flow works


@dataclass
class Proxy:
    node: Node
    router: Router
    location: Location
    port: int

    async def phone(self) -> UdpPhone:
        return await UdpPhone.open(self.port)

    async def peer(self, port: int) -> UdpPhone:
        """A phone on a given port: a trusted peer, a B2BUA, a hop of a Route."""
        _, phone = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: UdpPhone(self.port), local_addr=(HOST, port)
        )
        return phone

    async def registered(
        self, user: str, phone: UdpPhone | TcpPhone | None = None, **kw: object
    ) -> UdpPhone | TcpPhone:
        phone = phone or await self.phone()
        phone.send(phone.register(user, **kw))  # type: ignore[arg-type]
        await phone.response(200)
        return phone


@asynccontextmanager
async def proxy_running(
    *,
    trusted: tuple[str, ...] = (),
    b2bua: tuple[str, ...] = (),
    subscribers: tuple[str, ...] = ("alice@example.com", "bob@example.com", "carol@example.com"),
    timer_c: float | None = None,
    failover_after: float = 4.0,
    layer: TransactionLayer | None = None,
    record_route: bool = True,
    aliases: dict[str, frozenset[str]] | None = None,
    acr: str = "127.0.0.1:5080",
) -> AsyncIterator[Proxy]:
    port = free_port()
    settings = Settings(
        node={"name": "proxy-test", "drain_timeout": 0.1},
        sip={"host": HOST, "port": port, "server_header": "sipline-test"},
        proxy={
            "domains": ["example.com"], "trusted": list(trusted), "b2bua": list(b2bua),
            "record_route": record_route,
        },
        acr={"primary": acr},
    )  # fmt: skip
    location = Location()
    directory = SubscriberDirectory(
        subscribers=[
            replace(subscriber(aor, id_=i), aliases=(aliases or {}).get(aor, frozenset()))
            for i, aor in enumerate(subscribers)
        ]
    )
    authenticator = Authenticator(settings.auth, directory, ServedDomains(["example.com"], [HOST]))
    router = Router(
        settings,
        location,
        directory,
        authenticator,
        timer_c=timer_c,
        failover_after=failover_after,
    )
    node = Node(settings, StandInRegistrar(router, location), layer=layer)
    await node.start()
    try:
        yield Proxy(node, router, location, port)
    finally:
        router.close()
        await node.stop()


async def place_call(
    phone: UdpPhone | TcpPhone,
    uri: str = "sip:bob@example.com",
    contact: str | None = None,
    *,
    user: str = "alice",
    extra: tuple[tuple[str, str], ...] = (),
    auth_user: str = "alice",
) -> Request:
    """Alice's INVITE as a phone sends it: challenged 407 first, then with her credentials."""
    first = phone.new_request("INVITE", uri, contact=contact, user=user, extra=extra)
    phone.send(first)
    challenge = await phone.response(407)
    phone.ack_failure(first, challenge)
    second = parse_message(bytes(first))
    assert isinstance(second, Request)
    second.headers.set("Via", phone.via())
    second.headers.set("CSeq", "2 INVITE")
    credentials = authorization(challenge, second, auth_user, proxy=True)
    second.headers.add("Proxy-Authorization", credentials)
    phone.send(second)
    return second


async def ringing_then(phone: UdpPhone | TcpPhone, status: int) -> Response:
    """What a caller sees: the 180 relayed, then ``status``."""
    await phone.response(180)
    return await phone.response(status)


# -- a call A -> B ------------------------------------------------------------------------
@on_uvloop
async def test_a_call_reaches_the_callee_where_it_registered_from_and_ends_with_bye() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob", contact=f"<sip:bob@{PRIVATE}>")
        alice = await proxy.phone()
        call = await place_call(alice)

        forwarded = await bob.request("INVITE")
        assert forwarded.uri == f"sip:bob@{PRIVATE}"  # the registered contact
        vias = forwarded.headers.values("via")
        assert len(vias) == 2 and vias[0].startswith(
            f"SIP/2.0/UDP {HOST}:{proxy.port};branch=z9hG4bK"
        )
        assert forwarded.max_forwards == 69
        [record_route] = forwarded.headers.values("record-route")
        assert record_route.startswith(f"<sip:{HOST}:{proxy.port};lr;ftag=")
        assert "proxy-authorization" not in forwarded.headers  # our realm's, consumed

        bob.answer(forwarded, 180, tag="b1")
        bob.answer(forwarded, 200, tag="b1", contact=f"<sip:bob@{PRIVATE}>")
        ok = await ringing_then(alice, 200)
        assert len(ok.headers.values("via")) == 1  # our Via taken off
        assert ok.headers.values("record-route") == [record_route]

        dialog = Dialog.uac(call, ok)
        alice.ack(dialog, call)
        ack = await bob.request("ACK")
        assert ack.uri == f"sip:bob@{PRIVATE}"  # routed by the recorded flow, not the Contact
        assert "route" not in ack.headers

        alice.in_dialog(dialog, "BYE")
        bye = await bob.request("BYE")
        bob.answer(bye, 200)
        await alice.response(200)


@on_uvloop
async def test_bye_from_the_callee_reaches_the_caller_through_the_record_route() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        call = await place_call(alice, contact=f"<sip:alice@{PRIVATE}>")  # behind NAT
        forwarded = await bob.request("INVITE")
        response = bob.answer(forwarded, 200, tag="b1")
        ok = await alice.response(200)
        alice.ack(Dialog.uac(call, ok), call)
        await bob.request("ACK")

        callee = Dialog.uas(forwarded, response)
        bob.in_dialog(callee, "BYE")
        bye = await alice.request("BYE")
        assert bye.uri == f"sip:alice@{PRIVATE}"
        alice.answer(bye, 200)
        await bob.response(200)


@on_uvloop
async def test_a_reinvite_in_the_dialog_passes_through_us() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        call = await place_call(alice)
        forwarded = await bob.request("INVITE")
        bob.answer(forwarded, 200, tag="b1")
        dialog = Dialog.uac(call, await alice.response(200))
        alice.ack(dialog, call)
        await bob.request("ACK")

        alice.in_dialog(dialog, "INVITE")
        reinvite = await bob.request("INVITE")
        assert reinvite.to.tag == "b1" and "record-route" not in reinvite.headers
        bob.answer(reinvite, 200, tag="b1")
        await alice.response(200)  # not challenged: the dialog runs through our route


@on_uvloop
async def test_a_tcp_phone_gets_its_call_on_the_connection_it_registered_on() -> None:
    async with proxy_running() as proxy:
        bob = await TcpPhone.connect(proxy.port)
        await proxy.registered("bob", bob, contact="<sip:bob@192.168.1.50:5060;transport=tcp>")
        alice = await proxy.phone()
        call = await place_call(alice)
        forwarded = await bob.request("INVITE")
        assert forwarded.via.transport == "TCP"
        # RFC 5658: the UDP side and the TCP side each get a Record-Route of theirs.
        tcp_side, udp_side = forwarded.headers.values("record-route")
        assert ";transport=tcp;lr" in tcp_side and "transport" not in udp_side
        bob.answer(forwarded, 200, tag="b1")
        dialog = Dialog.uac(call, await alice.response(200))
        alice.in_dialog(dialog, "BYE")
        bye = await bob.request("BYE")
        bob.answer(bye, 200)
        await alice.response(200)
        bob.close()


# -- who cannot be reached -------------------------------------------------------------------
@on_uvloop
async def test_a_subscriber_who_is_not_registered_gets_480_saying_so() -> None:
    async with proxy_running() as proxy:
        alice = await proxy.phone()
        await place_call(alice)
        refused = await alice.response(480)
        assert refused.reason == "Temporarily Unavailable: bob@example.com is not registered"
        assert refused.to.tag


@on_uvloop
async def test_an_unknown_user_gets_404() -> None:
    async with proxy_running() as proxy:
        alice = await proxy.phone()
        await place_call(alice, "sip:nobody@example.com")
        refused = await alice.response(404)
        assert refused.reason == "Not Found: no subscriber nobody@example.com"


@on_uvloop
async def test_a_request_out_of_hops_gets_483() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        alice.send(alice.new_request("MESSAGE", "sip:bob@example.com", max_forwards=0))
        refused = await alice.response(483)
        assert "Max-Forwards" in refused.reason
        await bob.silence()


# -- authentication ---------------------------------------------------------------------------
@on_uvloop
async def test_an_invite_from_a_phone_is_challenged_first() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        alice.send(alice.new_request("INVITE", "sip:bob@example.com"))
        challenge = await alice.response(407)
        assert challenge.headers.get("proxy-authenticate")
        await bob.silence()


@on_uvloop
async def test_a_trusted_peer_is_not_challenged() -> None:
    peer_port = free_port()
    async with proxy_running(trusted=(f"{HOST}:{peer_port}",)) as proxy:
        bob = await proxy.registered("bob")
        acr = await proxy.peer(peer_port)
        acr.send(acr.new_request("INVITE", "sip:bob@example.com"))  # no credentials
        forwarded = await bob.request("INVITE")
        assert forwarded.headers.get("from", "").startswith("<sip:alice@example.com>")
        acr.close()


# -- forking -------------------------------------------------------------------------------------
@on_uvloop
async def test_cancel_during_ringing_cancels_every_branch_and_the_caller_gets_487() -> None:
    async with proxy_running() as proxy:
        desk = await proxy.registered("bob")
        mobile = await proxy.registered("bob")
        alice = await proxy.phone()
        call = await place_call(alice)
        branches = [await desk.request("INVITE"), await mobile.request("INVITE")]
        desk.answer(branches[0], 180)
        mobile.answer(branches[1], 180)
        await alice.response(180)
        await alice.response(180)

        alice.cancel(call)
        await alice.response(200)  # the CANCEL's own answer
        for phone, branch in ((desk, branches[0]), (mobile, branches[1])):
            cancel = await phone.request("CANCEL")
            assert cancel.via.branch == branch.via.branch
            phone.answer(cancel, 200)
            phone.answer(branch, 487)
            await phone.request("ACK")  # the proxy's ACK for the 487
        terminated = await alice.response(487)
        assert terminated.cseq.method == "INVITE"


@on_uvloop
async def test_forking_one_branch_answers_and_the_other_is_cancelled() -> None:
    async with proxy_running() as proxy:
        desk = await proxy.registered("bob")
        mobile = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice)
        at_desk, at_mobile = await desk.request("INVITE"), await mobile.request("INVITE")
        desk.answer(at_desk, 180)
        mobile.answer(at_mobile, 180)
        mobile.answer(at_mobile, 200, tag="m1")
        await alice.response(180)
        await alice.response(180)
        ok = await alice.response(200)
        assert ok.to.tag == "m1"
        cancel = await desk.request("CANCEL")
        desk.answer(cancel, 200)
        desk.answer(at_desk, 487)
        await desk.request("ACK")
        await alice.silence()  # the 487 of the cancelled branch stays with us


@on_uvloop
async def test_the_lower_q_contact_rings_when_the_higher_one_fails() -> None:
    async with proxy_running() as proxy:
        first = await proxy.registered("bob", q=1.0)
        second = await proxy.registered("bob", q=0.5)
        alice = await proxy.phone()
        await place_call(alice)
        busy = await first.request("INVITE")
        await second.silence()
        first.answer(busy, 486)
        await first.request("ACK")
        later = await second.request("INVITE")
        second.answer(later, 200)
        await alice.response(200)


@on_uvloop
async def test_a_6xx_ends_the_search_and_cancels_the_other_branches() -> None:
    async with proxy_running() as proxy:
        desk = await proxy.registered("bob")
        mobile = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice)
        at_desk, at_mobile = await desk.request("INVITE"), await mobile.request("INVITE")
        desk.answer(at_desk, 180)
        mobile.answer(at_mobile, 603)
        await mobile.request("ACK")
        await desk.request("CANCEL")
        await alice.response(180)
        declined = await alice.response(603)
        assert declined.cseq.method == "INVITE"


@on_uvloop
async def test_when_every_branch_fails_the_best_answer_goes_upstream() -> None:
    async with proxy_running() as proxy:
        desk = await proxy.registered("bob")
        mobile = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice)
        at_desk, at_mobile = await desk.request("INVITE"), await mobile.request("INVITE")
        desk.answer(at_desk, 480)
        mobile.answer(at_mobile, 486)
        busy = await alice.response(486)
        assert len(busy.headers.values("via")) == 1


# -- off-net ---------------------------------------------------------------------------------------
@on_uvloop
async def test_a_number_that_is_no_subscriber_goes_to_the_b2bua_with_the_callers_identity() -> None:
    b2bua_port = free_port()
    async with proxy_running(b2bua=(f"{HOST}:{b2bua_port}",)) as proxy:
        b2bua = await proxy.peer(b2bua_port)
        alice = await proxy.phone()
        await place_call(alice, "sip:+15551234567@example.com")
        forwarded = await b2bua.request("INVITE")
        assert forwarded.uri == "sip:+15551234567@example.com"
        assert forwarded.headers.get("p-asserted-identity") == "<sip:alice@example.com>"
        b2bua.answer(forwarded, 200)
        await alice.response(200)
        b2bua.close()


@on_uvloop
async def test_the_next_b2bua_is_tried_when_the_first_answers_503() -> None:
    ports = free_port(), free_port()
    async with proxy_running(b2bua=tuple(f"{HOST}:{p}" for p in ports)) as proxy:
        b2buas = [await proxy.peer(p) for p in ports]
        alice = await proxy.phone()
        await place_call(alice, "tel:+15551234567")
        first = await b2buas[0].request("INVITE")
        b2buas[0].answer(first, 503)
        await b2buas[0].request("ACK")
        second = await b2buas[1].request("INVITE")
        b2buas[1].answer(second, 486)
        await alice.response(486)
        for b2bua in b2buas:
            b2bua.close()


@on_uvloop
async def test_the_next_b2bua_is_tried_when_the_first_stays_silent() -> None:
    ports = free_port(), free_port()
    async with proxy_running(
        b2bua=tuple(f"{HOST}:{p}" for p in ports), failover_after=0.3
    ) as proxy:
        second = await proxy.peer(ports[1])
        alice = await proxy.phone()
        await place_call(alice, "sip:+15551234567@example.com")
        started = time.monotonic()
        forwarded = await second.request("INVITE")
        assert 0.25 < time.monotonic() - started < 1.5
        second.answer(forwarded, 200)
        await alice.response(200)
        second.close()


@on_uvloop
async def test_a_request_sent_back_to_us_unchanged_is_a_loop() -> None:
    async with proxy_running() as proxy:
        # A B2BUA address that is the proxy itself: the call comes straight back.
        proxy.router.targets.b2bua = [proxy.node.local_address("UDP")]
        alice = await proxy.phone()
        await place_call(alice, "sip:+15551234567@example.com")
        looped = await alice.response(482)
        assert looped.reason.startswith("Loop Detected")


# -- timers and stray responses --------------------------------------------------------------------
@on_uvloop
async def test_timer_c_cancels_a_branch_that_rings_too_long() -> None:
    async with proxy_running(timer_c=0.3) as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice)
        forwarded = await bob.request("INVITE")
        bob.answer(forwarded, 180)
        started = time.monotonic()
        cancel = await bob.request("CANCEL")
        assert 0.25 < time.monotonic() - started < 1.5
        bob.answer(cancel, 200)
        bob.answer(forwarded, 487)
        await bob.request("ACK")
        await alice.response(180)
        await alice.response(487)


@on_uvloop
async def test_a_2xx_retransmitted_after_the_transaction_ended_still_reaches_the_caller() -> None:
    # RFC 6026: timer M is 64*T1; with T1 = 10 ms the client transaction is
    # gone after 0.64 s, and a late 2xx retransmission is a stray response.
    layer = TransactionLayer(time.monotonic, t1=0.01, tick=0.01)
    async with proxy_running(layer=layer) as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice)
        forwarded = await bob.request("INVITE")
        ok = bob.answer(forwarded, 200, tag="b1")
        await alice.response(200)
        await asyncio.sleep(1.0)
        bob.send(ok)
        again = await alice.response(200)
        assert len(again.headers.values("via")) == 1


@on_uvloop
async def test_cancel_for_nothing_gets_481() -> None:
    async with proxy_running() as proxy:
        alice = await proxy.phone()
        alice.cancel(alice.new_request("INVITE", "sip:bob@example.com"))
        refused = await alice.response(481)
        assert "no INVITE" in refused.reason


# -- what must not happen ----------------------------------------------------------------------
@on_uvloop
async def test_a_made_up_to_tag_and_a_route_naming_us_do_not_take_a_call_off_net() -> None:
    b2bua_port = free_port()
    async with proxy_running(b2bua=(f"{HOST}:{b2bua_port}",)) as proxy:
        b2bua = await proxy.peer(b2bua_port)
        fraud = await proxy.phone()
        # A Route naming us and a To tag: it looks like a request in a dialog of ours.
        fraud.send(
            fraud.new_request(
                "INVITE",
                "sip:+19005550100@example.com",
                to="<sip:+19005550100@example.com>;tag=made-up",
                extra=(("Route", f"<sip:{HOST}:{proxy.port};lr>"),),
            )
        )
        refused = await fraud.response(403)  # our Record-Routes are signed: this is none
        assert refused.reason == "Forbidden: a Route names us without our signature"
        await b2bua.silence()
        b2bua.close()


@on_uvloop
async def test_a_trusted_peer_calling_a_number_that_is_no_subscriber_gets_404() -> None:
    peer_port, b2bua_port = free_port(), free_port()
    async with proxy_running(
        trusted=(f"{HOST}:{peer_port}",), b2bua=(f"{HOST}:{b2bua_port}",)
    ) as proxy:
        acr = await proxy.peer(peer_port)
        acr.send(acr.new_request("INVITE", "sip:+15551234567@example.com"))
        await acr.response(404)  # not back to the B2BUA, which would send it here again
        acr.close()


@on_uvloop
async def test_a_strangers_preloaded_route_is_refused_before_any_challenge() -> None:
    hop_port = free_port()
    async with proxy_running() as proxy:
        hop = await proxy.peer(hop_port)
        alice = await proxy.phone()
        first = alice.new_request("MESSAGE", "sip:dave@example.net")
        first.headers.add("Route", f"<sip:{HOST}:{proxy.port};lr>")  # us: fine
        first.headers.add("Route", f"<sip:{HOST}:{hop_port};lr>")  # beyond us: not his to say
        alice.send(first)
        refused = await alice.response(403)
        assert refused.reason == "Preload Route denied"
        await hop.silence()
        assert proxy.router.counts["preloaded_routes"] == 1
        hop.close()


@on_uvloop
async def test_a_trusted_peers_preloaded_route_is_followed_and_kept() -> None:
    hop_port, peer_port = free_port(), free_port()
    async with proxy_running(trusted=(f"{HOST}:{peer_port}",)) as proxy:
        hop = await proxy.peer(hop_port)
        peer = await proxy.peer(peer_port)
        route = f"<sip:{HOST}:{hop_port};lr>"
        request = peer.new_request("MESSAGE", "sip:dave@example.net")
        request.headers.add("Route", f"<sip:{HOST}:{proxy.port};lr>")
        request.headers.add("Route", route)
        peer.send(request)
        forwarded = await hop.request("MESSAGE")
        assert forwarded.uri == "sip:dave@example.net"
        assert forwarded.headers.values("route") == [route]
        hop.answer(forwarded, 200)
        await peer.response(200)
        hop.close()
        peer.close()


@on_uvloop
async def test_a_binding_with_a_path_is_reached_through_the_path() -> None:
    edge_port = free_port()
    async with proxy_running() as proxy:
        edge = await proxy.peer(edge_port)
        # As the registrar stores a REGISTER that came through an edge proxy (RFC 3327).
        path = f"<sip:{HOST}:{edge_port};lr>"
        proxy.location.apply(
            [
                Binding(
                    "bob@example.com",
                    f"sip:bob@{PRIVATE}",
                    time.time() + 60,
                    source=edge.address,
                    path=(path,),
                )
            ]
        )
        alice = await proxy.phone()
        await place_call(alice)
        forwarded = await edge.request("INVITE")
        assert forwarded.uri == f"sip:bob@{PRIVATE}"
        assert forwarded.headers.values("route") == [path]
        edge.close()


# -- which requests are challenged ----------------------------------------------------------------
@on_uvloop
async def test_an_options_to_a_subscriber_is_challenged_and_then_reaches_them() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        prober = await proxy.phone()
        first = prober.new_request("OPTIONS", f"sip:bob@{HOST}:{proxy.port}")
        prober.send(first)
        challenge = await prober.response(407)  # before anything is looked up
        await bob.silence()
        second = parse_message(bytes(first))
        assert isinstance(second, Request)
        second.headers.set("Via", prober.via())
        second.headers.set("CSeq", "2 OPTIONS")
        second.headers.add(
            "Proxy-Authorization", authorization(challenge, second, "alice", proxy=True)
        )
        prober.send(second)
        options = await bob.request("OPTIONS")
        assert options.uri == f"sip:bob@{HOST}:{bob.port}"
        assert options.headers.get("p-asserted-identity") == "<sip:alice@example.com>"
        bob.answer(options, 200)
        await prober.response(200)


@on_uvloop
async def test_an_options_that_would_leave_the_network_is_challenged() -> None:
    b2bua_port = free_port()
    async with proxy_running(b2bua=(f"{HOST}:{b2bua_port}",)) as proxy:
        prober = await proxy.phone()
        prober.send(prober.new_request("OPTIONS", "sip:+15551234567@example.com"))
        await prober.response(407)


@on_uvloop
async def test_a_100_from_the_callee_stays_here_and_lets_a_cancel_through() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        call = await place_call(alice)
        forwarded = await bob.request("INVITE")
        bob.answer(forwarded, 100)
        await alice.response(100)  # the proxy's own
        await alice.silence()
        alice.cancel(call)
        await alice.response(200)
        cancel = await bob.request("CANCEL")
        bob.answer(cancel, 200)
        bob.answer(forwarded, 487)
        await bob.request("ACK")
        await alice.response(487)


# -- identity and trust (issue 10) ---------------------------------------------------------------
@on_uvloop
async def test_an_on_net_call_asserts_the_callers_identity_and_drops_what_a_phone_may_not_say(
) -> None:  # fmt: skip
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice, extra=(
            ("P-Asserted-Identity", "<sip:carol@example.com>"),
            ("X-Sipline-Account", "SOMEONE-ELSES"),
            ("x-sipline-media-call", "theirs"),
            ("Path", f"<sip:{HOST}:5080;lr>"),
        ))  # fmt: skip
        forwarded = await bob.request("INVITE")
        assert forwarded.headers.get_all("p-asserted-identity") == ["<sip:alice@example.com>"]
        for name in ("x-sipline-account", "x-sipline-media-call", "path"):
            assert name not in forwarded.headers


@on_uvloop
async def test_a_from_that_is_not_the_authenticated_subscriber_is_refused_403() -> None:
    async with proxy_running() as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice, user="carol", auth_user="alice")  # alice's password, carol's name
        refused = await alice.response(403)
        assert refused.reason == "Forbidden: the From is not alice@example.com's"
        await bob.silence()
        assert proxy.router.counts["impersonations"] == 1


@on_uvloop
async def test_a_subscriber_may_use_an_alias_it_is_provisioned_with_in_its_from() -> None:
    aliases = {"alice@example.com": frozenset({"15550100"})}
    async with proxy_running(aliases=aliases) as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        await place_call(alice, user="15550100", auth_user="alice")
        forwarded = await bob.request("INVITE")
        assert forwarded.from_.uri.user == "15550100"  # type: ignore[union-attr]
        assert forwarded.headers.get("p-asserted-identity") == "<sip:alice@example.com>"


@on_uvloop
async def test_a_contact_leading_to_an_internal_node_is_refused() -> None:
    b2bua_port = free_port()
    async with proxy_running(b2bua=(f"{HOST}:{b2bua_port}",)) as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        # bob's in-dialog requests would go to the B2BUA, past the B2BUA's own checks.
        await place_call(alice, contact=f"<sip:alice@{HOST}:{b2bua_port}>")
        refused = await alice.response(403)
        assert refused.reason == "Forbidden: the Contact leads to one of our internal nodes"
        await bob.silence()


@on_uvloop
async def test_in_a_dialog_a_route_beyond_ours_may_not_lead_to_an_internal_node() -> None:
    b2bua_port = free_port()
    async with proxy_running(b2bua=(f"{HOST}:{b2bua_port}",)) as proxy:
        b2bua = await proxy.peer(b2bua_port)
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        call = await place_call(alice)
        forwarded = await bob.request("INVITE")
        response = bob.answer(forwarded, 200, tag="b1")
        alice.ack(Dialog.uac(call, await alice.response(200)), call)
        await bob.request("ACK")
        callee = Dialog.uas(forwarded, response)
        callee.route_set.append(f"<sip:{HOST}:{b2bua_port};lr>")  # bob's own addition
        bob.in_dialog(callee, "INVITE")
        refused = await bob.response(403)
        assert refused.reason == "Forbidden: the next hop is one of our internal nodes"
        await b2bua.silence()
        b2bua.close()


@on_uvloop
async def test_an_off_net_calls_bye_reaches_the_b2bua_the_signed_route_names() -> None:
    b2bua_port = free_port()
    async with proxy_running(b2bua=(f"{HOST}:{b2bua_port}",)) as proxy:
        b2bua = await proxy.peer(b2bua_port)
        alice = await proxy.phone()
        call = await place_call(alice, "sip:+15551234567@example.com")
        forwarded = await b2bua.request("INVITE")
        [record_route] = forwarded.headers.values("record-route")
        assert f";ih={HOST}~{b2bua_port};" in record_route
        b2bua.answer(forwarded, 200, tag="b1", contact=f"<sip:b2bua@{HOST}:{b2bua_port}>")
        dialog = Dialog.uac(call, await alice.response(200))
        alice.ack(dialog, call)
        await b2bua.request("ACK")
        alice.in_dialog(dialog, "BYE")
        bye = await b2bua.request("BYE")
        b2bua.answer(bye, 200)
        await alice.response(200)
        b2bua.close()


@on_uvloop
async def test_an_inbound_calls_bye_from_the_phone_reaches_the_acr_it_came_through() -> None:
    # carrier -> ACR -> us -> bob: bob's requests go back to the ACR, an internal node
    # the dialog runs through, which our signed Record-Route names (ih).
    acr_port = free_port()
    async with proxy_running(trusted=(f"{HOST}:{acr_port}",), acr=f"{HOST}:{acr_port}") as proxy:
        acr = await proxy.peer(acr_port)
        bob = await proxy.registered("bob")
        invite = acr.new_request("INVITE", "sip:bob@example.com", user="15551234567")
        acr.send(invite)
        forwarded = await bob.request("INVITE")
        assert f";ih={HOST}~{acr_port};" in forwarded.headers.values("record-route")[0]
        response = bob.answer(forwarded, 200, tag="b1")
        ok = await acr.response(200)
        caller = Dialog.uac(invite, ok)
        acr.ack(caller, invite)
        await bob.request("ACK")
        bob.in_dialog(Dialog.uas(forwarded, response), "BYE")
        bye = await acr.request("BYE")
        acr.answer(bye, 200)
        await bob.response(200)
        acr.close()


@on_uvloop
async def test_without_record_routing_an_ack_is_forwarded_only_for_an_invite_of_ours() -> None:
    async with proxy_running(record_route=False) as proxy:
        bob = await proxy.registered("bob")
        alice = await proxy.phone()
        call = await place_call(alice)
        forwarded = await bob.request("INVITE")
        assert "record-route" not in forwarded.headers
        bob.answer(forwarded, 200, tag="b1", contact=bob.contact("bob"))
        dialog = Dialog.uac(call, await alice.response(200))
        dialog.route_set = [f"<sip:{HOST}:{proxy.port};lr>"]  # us as her outbound proxy
        alice.ack(dialog, call)
        await bob.request("ACK")
        stranger = await proxy.phone()
        ack, _ = dialog.create_ack(7, via=stranger.via())  # no INVITE of ours has CSeq 7
        stranger.send(ack)
        await bob.silence()
        assert proxy.router.counts["acks_dropped"] == 1

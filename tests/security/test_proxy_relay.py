"""Who may make the proxy relay (issue 10, "Who may relay"): attacks on a real
``sipline proxy``, from raw sockets. Each one is refused (or dropped), and
nothing reaches the address the attacker chose."""

from __future__ import annotations

import pytest

from tests.security.proxy_wire import HOST, Wire, edge

__all__ = ["edge"]
pytestmark = pytest.mark.e2e


def test_an_unauthenticated_bye_with_a_to_tag_and_a_route_naming_us_goes_nowhere(
    edge: Wire,
) -> None:
    attacker, victim = edge.sock(), edge.victim
    forged = f"127.0.0.1~{victim.port}~u"
    for method, route in (
        ("BYE", f"<sip:{HOST}:{edge.port};lr>"),  # ours, unsigned
        ("INVITE", f"<sip:{HOST}:{edge.port};lr;ftag=x;fa={forged};fb={forged}>"),  # flows
        ("BYE", f"<sip:{HOST}:{edge.port};lr;ftag=x;fb={forged};sg=AAAAAAAAAAAAAAAA>"),  # signed?
    ):
        request = attacker.request(
            method, f"sip:victim@{HOST}:{victim.port}", to="<sip:bob@example.com>;tag=made-up",
            headers=(f"Route: {route}", f"Route: <sip:{HOST}:{victim.port};lr>"),
        )  # fmt: skip
        attacker.send(request, edge.address)
        refused = attacker.response()
        assert refused.status == 403, refused.reason
    victim.nothing()
    log = edge.log_text()
    assert log.count("event=refused why=forged_routes") == 3
    assert f"source=udp:{HOST}:{attacker.port}" in log


def test_a_to_tag_without_any_route_of_ours_goes_nowhere_either(edge: Wire) -> None:
    attacker, victim = edge.sock(), edge.victim
    attacker.send(
        attacker.request(
            "INVITE", f"sip:victim@{HOST}:{victim.port}", to="<sip:x@example.com>;tag=made-up"
        ),
        edge.address,
    )
    refused = attacker.response()
    assert (refused.status, refused.reason) == (
        403, "Forbidden: in a dialog we did not record-route (no Route names us)"
    )  # fmt: skip
    victim.nothing()


def test_a_strangers_preloaded_route_is_refused(edge: Wire) -> None:
    attacker, victim = edge.sock(), edge.victim
    attacker.send(
        attacker.request(
            "INVITE", "sip:bob@example.com",
            headers=(f"Route: <sip:{HOST}:{edge.port};lr>", f"Route: <sip:{HOST}:{victim.port};lr>"),
        ),  # fmt: skip
        edge.address,
    )
    refused = attacker.response()
    assert (refused.status, refused.reason) == (403, "Preload Route denied")
    victim.nothing()


def test_a_subscribers_route_to_the_acr_is_refused(edge: Wire) -> None:
    alice = edge.sock()
    invite = alice.request(
        "INVITE", "sip:+15551234567@example.com",
        headers=(f"Route: <sip:{HOST}:{edge.port};lr>", f"Route: <sip:{HOST}:{edge.acr.port};lr>"),
    )  # fmt: skip
    alice.send(invite, edge.address)
    assert alice.response().reason == "Preload Route denied"  # not even challenged
    edge.acr.nothing()
    edge.b2bua.nothing()


def test_a_register_whose_contact_leads_to_the_acr_is_refused(edge: Wire) -> None:
    alice = edge.sock()
    register = alice.request(
        "REGISTER", "sip:example.com", to="<sip:alice@example.com>", contact=False,
        headers=(f"Contact: <sip:alice@{HOST}:{edge.acr.port}>",),
    )  # fmt: skip
    alice.send(register, edge.address)
    refused = alice.response()
    assert refused.status == 403 and "internal nodes" in refused.reason


def test_an_ack_without_a_route_is_not_relayed(edge: Wire) -> None:
    attacker, victim = edge.sock(), edge.victim
    ack = attacker.request(
        "ACK", f"sip:victim@{HOST}:{victim.port}", to="<sip:victim@example.com>;tag=t"
    )
    attacker.send(ack, edge.address)
    victim.nothing()
    assert "event=ack_dropped why=\"not ours to forward\"" in edge.log_text()


def test_a_forged_stray_200_is_not_reflected(edge: Wire) -> None:
    attacker, victim = edge.sock(), edge.victim
    ok = (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{edge.port};branch=z9hG4bKforged.AAAAAAAAAAAA.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{victim.port};branch=z9hG4bKvictim\r\n"
        "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n"
        "Call-ID: reflect\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:b@{HOST}:{attacker.port}>\r\n"
        "Content-Length: 1000\r\n\r\n" + "x" * 1000  # an amplifier would send this on
    )
    attacker.send(ok.encode(), edge.address)
    victim.nothing()
    assert "event=stray_dropped" in edge.log_text()

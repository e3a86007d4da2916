"""Dialogs: RFC 3261 §12 (creation, in-dialog requests, routing, CSeq, target refresh).

The call is Alice (UAC) -> p1.atlanta (loose) -> p2.biloxi (loose) -> Bob (UAS),
as in RFC 3665 §3.2: both proxies record-route.
"""

from collections.abc import Sequence

import pytest

from sipline.sip.dialog import Dialog, DialogId, creates_dialog
from sipline.sip.errors import LocalProtocolError, ParseError
from sipline.sip.message import Request, Response, parse_message

CALL_ID = "3848276298220188511@atlanta.example.com"
ALICE_TAG = "9fxced76sl"
BOB_TAG = "8321234356"
ALICE_CONTACT = "sip:alice@client.atlanta.example.com;transport=tcp"
BOB_CONTACT = "sip:bob@client.biloxi.example.com;transport=tcp"
P1 = "<sip:p1.atlanta.example.com;lr>"
P2 = "<sip:p2.biloxi.example.com;lr>"
VIA = "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b43"


def invite(record_route: Sequence[str] = (), *, uri: str = "sip:bob@biloxi.example.com") -> Request:
    """Alice's INVITE; with ``record_route`` it is the copy Bob receives."""
    lines = [
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9",
        "Max-Forwards: 70",
        *(f"Record-Route: {value}" for value in record_route),
        f"From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}",
        "To: Bob <sip:bob@biloxi.example.com>",
        f"Call-ID: {CALL_ID}",
        "CSeq: 1 INVITE",
        f"Contact: <{ALICE_CONTACT}>",
        "Content-Length: 0",
    ]
    request = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(request, Request)
    return request


def answer(
    request: Request,
    status: int = 200,
    *,
    to_tag: str | None = BOB_TAG,
    record_route: Sequence[str] = (),
    contact: str | None = BOB_CONTACT,
    cseq: str | None = None,
) -> Response:
    response = request.response(status, to_tag=to_tag)
    for value in record_route:
        response.headers.add("Record-Route", value)
    if contact is not None:
        response.headers.add("Contact", f"<{contact}>")
    if cseq is not None:
        response.headers.set("CSeq", cseq)
    return response


def reparsed(request: Request) -> Request:
    """The request as the next hop parses it: proof it is well formed."""
    parsed = parse_message(request.serialise())
    assert isinstance(parsed, Request)
    return parsed


def alice_dialog(record_route: Sequence[str] = (P2, P1)) -> Dialog:
    """Record-Route arrives in the order the proxies added it: p2 on top."""
    request = invite()
    return Dialog.uac(request, answer(invite(record_route), record_route=record_route))


def bob_dialog(record_route: Sequence[str] = (P2, P1)) -> Dialog:
    request = invite(record_route)
    return Dialog.uas(request, answer(request, record_route=record_route))


def in_dialog(
    dialog_of_peer: Dialog, method: str, cseq: int, contact: str | None = None
) -> Request:
    """A request the peer sends in the dialog, with the CSeq number given."""
    request, _ = dialog_of_peer.create_request(method, via=VIA, contact=contact)
    request.headers.set("CSeq", f"{cseq} {method}")
    return reparsed(request)


# --- creating a dialog ----------------------------------------------------------


def test_a_uac_dialog_reverses_record_route_and_targets_the_contact_of_the_response():
    dialog = alice_dialog()
    assert dialog.id == DialogId(CALL_ID, ALICE_TAG, BOB_TAG)
    assert dialog.route_set == [P1, P2]
    assert dialog.remote_target == BOB_CONTACT
    assert dialog.local_seq == 1
    assert dialog.remote_seq is None
    assert dialog.state == "confirmed"
    assert dialog.secure is False


def test_a_uas_dialog_keeps_record_route_in_order_and_targets_the_contact_of_the_request():
    dialog = bob_dialog()
    assert dialog.id == DialogId(CALL_ID, BOB_TAG, ALICE_TAG)
    assert dialog.route_set == [P2, P1]
    assert dialog.remote_target == ALICE_CONTACT
    assert dialog.remote_seq == 1
    assert dialog.local_seq is None
    assert dialog.state == "confirmed"


def test_local_and_remote_uris_keep_display_names_and_drop_tags():
    alice, bob = alice_dialog(), bob_dialog()
    assert alice.local_uri == bob.remote_uri == "Alice <sip:alice@atlanta.example.com>"
    assert alice.remote_uri == bob.local_uri == "Bob <sip:bob@biloxi.example.com>"


def test_both_sides_name_the_dialog_with_the_same_call_id_and_swapped_tags():
    alice, bob = alice_dialog(), bob_dialog()
    assert alice.id == DialogId(bob.id.call_id, bob.id.remote_tag, bob.id.local_tag)
    bye, _ = alice.create_request("BYE", via=VIA)
    assert Dialog.id_of(bye, uas=False) == alice.id
    assert Dialog.id_of(reparsed(bye), uas=True) == bob.id
    ok = reparsed(bye).response(200)
    assert Dialog.id_of(ok, uas=False) == alice.id


def test_record_route_values_are_kept_as_written():
    odd = "<sip:p2.biloxi.example.com;lr;ftag=XyZ>;Custom=1"
    assert bob_dialog([odd, P1]).route_set == [odd, P1]


def test_a_sips_request_uri_makes_the_dialog_secure():
    request = invite(uri="sips:bob@biloxi.example.com")
    assert Dialog.uac(request, answer(request)).secure is True


def test_only_a_1xx_with_a_to_tag_or_a_2xx_creates_a_dialog():
    request = invite()
    assert creates_dialog(answer(request, 180))
    assert creates_dialog(answer(request, 200))
    assert not creates_dialog(answer(request, 180, to_tag=None))
    assert not creates_dialog(answer(request, 100))
    assert not creates_dialog(answer(request, 486))
    with pytest.raises(ParseError):
        Dialog.uac(request, answer(request, 180, to_tag=None))
    with pytest.raises(ParseError):
        Dialog.uas(request, answer(request, 486))


def test_a_2xx_without_contact_cannot_create_a_dialog_but_a_180_can():
    request = invite()
    with pytest.raises(ParseError):
        Dialog.uac(request, answer(request, 200, contact=None))
    early = Dialog.uac(request, answer(request, 180, contact=None))
    assert early.remote_target == "sip:bob@biloxi.example.com"


def test_a_response_to_another_request_cannot_create_the_dialog():
    request = invite()
    with pytest.raises(ParseError):
        Dialog.uac(request, answer(request, cseq="2 INVITE"))


def test_a_2xx_without_to_tag_from_an_rfc2543_peer_gives_an_empty_remote_tag():
    request = invite()
    dialog = Dialog.uac(request, answer(request, to_tag=None))
    assert dialog.id.remote_tag == ""
    bye, _ = dialog.create_request("BYE", via=VIA)
    assert reparsed(bye).to.tag is None


# --- requests within the dialog: routing ---------------------------------------


def test_a_bye_with_loose_routing_targets_the_remote_contact_and_lists_the_route_set():
    bye, next_hop = alice_dialog().create_request("BYE", via=VIA)
    bye = reparsed(bye)
    assert bye.uri == BOB_CONTACT
    assert bye.headers.values("Route") == [P1, P2]
    assert next_hop == "sip:p1.atlanta.example.com;lr"
    assert bye.to.uri_text == "sip:bob@biloxi.example.com"
    assert bye.to.tag == BOB_TAG
    assert bye.from_.uri_text == "sip:alice@atlanta.example.com"
    assert bye.from_.tag == ALICE_TAG
    assert bye.call_id == CALL_ID
    assert (bye.cseq.number, bye.cseq.method) == (2, "BYE")
    assert bye.max_forwards == 70
    assert bye.via.branch == "z9hG4bK74b43"
    assert bye.content_length == 0


def test_the_callee_routes_its_bye_through_the_same_proxies_the_other_way():
    bye, next_hop = bob_dialog().create_request("BYE", via=VIA)
    bye = reparsed(bye)
    assert bye.uri == ALICE_CONTACT
    assert bye.headers.values("Route") == [P2, P1]
    assert next_hop == "sip:p2.biloxi.example.com;lr"
    assert (bye.from_.tag, bye.to.tag) == (BOB_TAG, ALICE_TAG)


def test_without_a_route_set_the_request_goes_straight_to_the_remote_target():
    bye, next_hop = alice_dialog(record_route=[]).create_request("BYE", via=VIA)
    bye = reparsed(bye)
    assert bye.uri == BOB_CONTACT
    assert "Route" not in bye.headers
    assert next_hop == BOB_CONTACT


def test_a_strict_router_first_takes_the_request_uri_and_the_remote_target_goes_last():
    # Alice's route set is [strict, p2]; Record-Route arrived as p2, strict.
    strict = "<sip:strict.atlanta.example.com;maddr=192.0.2.7>;x=y"
    bye, next_hop = alice_dialog(record_route=[P2, strict]).create_request("BYE", via=VIA)
    bye = reparsed(bye)
    assert bye.uri == "sip:strict.atlanta.example.com;maddr=192.0.2.7"
    assert bye.headers.values("Route") == [P2, f"<{BOB_CONTACT}>"]
    assert next_hop == bye.uri


def test_a_strict_route_loses_what_a_request_uri_may_not_carry():
    strict = "<sip:strict.atlanta.example.com;method=INVITE?Subject=x>"
    bye, _ = alice_dialog(record_route=[strict]).create_request("BYE", via=VIA)
    assert bye.uri == "sip:strict.atlanta.example.com"
    assert reparsed(bye).headers.values("Route") == [f"<{BOB_CONTACT}>"]


def test_a_request_carries_the_contact_body_and_extra_headers_given():
    sdp = b"v=0\r\no=alice 1 2 IN IP4 192.0.2.1\r\n"
    reinvite, _ = alice_dialog().create_request(
        "INVITE",
        via=VIA,
        contact=f"<{ALICE_CONTACT}>",
        body=sdp,
        content_type="application/sdp",
        extra=[("Supported", "timer"), ("Session-Expires", "1800;refresher=uac")],
    )
    reinvite = reparsed(reinvite)
    assert reinvite.contacts[0].uri_text == ALICE_CONTACT
    assert reinvite.body == sdp
    assert reinvite.content_type == "application/sdp"
    assert reinvite.content_length == len(sdp)
    assert reinvite.headers.get("Supported") == "timer"
    assert reinvite.headers.get("Session-Expires") == "1800;refresher=uac"


# --- CSeq ------------------------------------------------------------------------


def test_each_new_request_takes_the_next_cseq_and_the_2xx_ack_reuses_the_invites():
    dialog = alice_dialog()
    reinvite, _ = dialog.create_request("INVITE", via=VIA, contact=f"<{ALICE_CONTACT}>")
    info, _ = dialog.create_request("INFO", via=VIA)
    ack, next_hop = dialog.create_ack(reinvite.cseq.number, via=VIA)
    assert reinvite.cseq.number == 2
    assert info.cseq.number == 3
    ack = reparsed(ack)
    assert (ack.method, ack.cseq.number, ack.cseq.method) == ("ACK", 2, "ACK")
    assert ack.uri == BOB_CONTACT
    assert ack.headers.values("Route") == [P1, P2]
    assert next_hop == "sip:p1.atlanta.example.com;lr"
    assert dialog.local_seq == 3


def test_the_ack_for_the_initial_invite_carries_cseq_1():
    ack, _ = alice_dialog().create_ack(1, via=VIA)
    assert str(reparsed(ack).cseq) == "1 ACK"


def test_ack_and_cancel_are_not_built_as_new_requests():
    dialog = alice_dialog()
    for method in ("ACK", "CANCEL"):
        with pytest.raises(LocalProtocolError):
            dialog.create_request(method, via=VIA)
    assert dialog.local_seq == 1


def test_the_callee_starts_its_own_cseq_when_it_sends_its_first_request():
    dialog = bob_dialog()
    first, _ = dialog.create_request("INFO", via=VIA)
    second, _ = dialog.create_request("BYE", via=VIA)
    assert (first.cseq.number, second.cseq.number) == (1, 2)


def test_a_request_with_a_lower_cseq_is_out_of_order_and_rejected():
    bob, alice = bob_dialog(), alice_dialog()
    assert bob.receive_request(in_dialog(alice, "INFO", 5))
    assert bob.remote_seq == 5
    assert not bob.receive_request(in_dialog(alice, "INFO", 4))
    assert bob.remote_seq == 5
    assert bob.receive_request(in_dialog(alice, "INFO", 6))
    assert bob.remote_seq == 6


def test_the_first_request_from_the_caller_sets_an_empty_remote_seq():
    alice, bob = alice_dialog(), bob_dialog()
    assert alice.remote_seq is None
    assert alice.receive_request(in_dialog(bob, "BYE", 7000))
    assert alice.remote_seq == 7000


def test_an_ack_with_the_invites_cseq_is_in_order_even_after_a_later_request():
    bob, alice = bob_dialog(), alice_dialog()
    assert bob.receive_request(in_dialog(alice, "INVITE", 2, f"<{ALICE_CONTACT}>"))
    assert bob.receive_request(in_dialog(alice, "UPDATE", 3))
    ack, _ = alice.create_ack(2, via=VIA)
    assert bob.receive_request(reparsed(ack))
    assert bob.remote_seq == 3


# --- target refresh ----------------------------------------------------------------


def test_a_re_invite_with_a_contact_refreshes_the_remote_target():
    bob, alice = bob_dialog(), alice_dialog()
    moved = "sip:alice@198.51.100.20:5070"
    assert bob.receive_request(in_dialog(alice, "INVITE", 2, f"<{moved}>"))
    assert bob.remote_target == moved
    bye, _ = bob.create_request("BYE", via=VIA)
    assert bye.uri == moved


def test_an_update_refreshes_the_target_and_other_requests_do_not():
    bob, alice = bob_dialog(), alice_dialog()
    assert bob.receive_request(in_dialog(alice, "INFO", 2, "<sip:alice@192.0.2.99>"))
    assert bob.remote_target == ALICE_CONTACT
    assert bob.receive_request(in_dialog(alice, "UPDATE", 3, "<sip:alice@192.0.2.98>"))
    assert bob.remote_target == "sip:alice@192.0.2.98"
    assert bob.receive_request(in_dialog(alice, "INVITE", 4))
    assert bob.remote_target == "sip:alice@192.0.2.98"


def test_an_out_of_order_re_invite_does_not_refresh_the_target():
    bob, alice = bob_dialog(), alice_dialog()
    assert bob.receive_request(in_dialog(alice, "INFO", 5))
    assert not bob.receive_request(in_dialog(alice, "INVITE", 4, "<sip:alice@192.0.2.99>"))
    assert bob.remote_target == ALICE_CONTACT


def test_a_2xx_to_a_re_invite_refreshes_the_target_and_keeps_the_route_set():
    alice = alice_dialog()
    reinvite, _ = alice.create_request("INVITE", via=VIA, contact=f"<{ALICE_CONTACT}>")
    ok = answer(reparsed(reinvite), contact="sip:bob@198.51.100.30", record_route=[P1])
    alice.update_from_response(ok)
    assert alice.remote_target == "sip:bob@198.51.100.30"
    assert alice.route_set == [P1, P2]
    assert alice.state == "confirmed"


# --- early dialogs and the end of a dialog --------------------------------------------


def test_an_early_dialog_is_confirmed_by_the_2xx_which_sets_route_set_and_target():
    request = invite()
    ringing = answer(invite([P1]), 180, record_route=[P1], contact="sip:bob@192.0.2.50")
    dialog = Dialog.uac(request, ringing)
    assert dialog.state == "early"
    assert dialog.route_set == [P1]
    assert dialog.remote_target == "sip:bob@192.0.2.50"
    dialog.update_from_response(answer(invite([P2, P1]), 183, record_route=[P2, P1]))
    assert dialog.state == "early"
    dialog.update_from_response(answer(invite([P2, P1]), 200, record_route=[P2, P1]))
    assert dialog.state == "confirmed"
    assert dialog.route_set == [P1, P2]
    assert dialog.remote_target == BOB_CONTACT


def test_a_2xx_from_another_fork_is_not_this_early_dialogs():
    request = invite()
    dialog = Dialog.uac(request, answer(request, 180))
    other = answer(request, 200, to_tag="forked-b")
    with pytest.raises(ParseError):
        dialog.update_from_response(other)
    assert Dialog.uac(request, other).id.remote_tag == "forked-b"
    assert dialog.state == "early"


def test_a_non_2xx_final_response_to_the_invite_ends_the_early_dialog():
    request = invite()
    dialog = Dialog.uac(request, answer(request, 180))
    dialog.update_from_response(answer(request, 486))
    assert dialog.state == "terminated"


def test_a_uas_confirms_its_early_dialog_when_it_sends_the_2xx():
    request = invite()
    dialog = Dialog.uas(request, answer(request, 180))
    assert dialog.state == "early"
    dialog.send_response(answer(request, 200))
    assert dialog.state == "confirmed"


def test_a_uas_ends_its_early_dialog_when_it_rejects_the_invite():
    request = invite()
    dialog = Dialog.uas(request, answer(request, 183))
    dialog.send_response(answer(request, 603))
    assert dialog.state == "terminated"


def test_a_481_or_408_to_an_in_dialog_request_ends_the_dialog():
    for status in (481, 408):
        alice = alice_dialog()
        info, _ = alice.create_request("INFO", via=VIA)
        alice.update_from_response(reparsed(info).response(status))
        assert alice.state == "terminated"


def test_a_2xx_to_bye_ends_the_dialog_on_both_sides_and_a_challenge_does_not():
    alice, bob = alice_dialog(), bob_dialog()
    bye, _ = alice.create_request("BYE", via=VIA)
    bye = reparsed(bye)
    alice.update_from_response(bye.response(407))
    assert alice.state == "confirmed"
    assert bob.receive_request(bye)
    assert bob.state == "confirmed"
    bob.send_response(bye.response(200))
    alice.update_from_response(bye.response(200))
    assert (alice.state, bob.state) == ("terminated", "terminated")

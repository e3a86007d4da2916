"""What only we can have written (sipline.proxying.signing): our Record-Route
parameters, signed for one dialog, and our branches, signed for one hop."""

from __future__ import annotations

import hashlib
import hmac
from base64 import urlsafe_b64encode

from sipline.proxying.rules import Local, preprocess_routes, route_params
from sipline.proxying.signing import Signer
from sipline.sip.address import Address
from tests.proxying.test_rules import CALLER, US, invite

LOCAL = Local({"UDP": Address("UDP", US, 5060)}, ["example.com"])
SIGNER = Signer.from_secret("shared secret")
CALL = "c1@192.0.2.7"  # invite()'s
PARAMS = ";ftag=a1;fa=192.0.2.7~40000~u;fb=203.0.113.5~5060~t~17;ma"


def record_route(params: str = PARAMS, call_id: str = CALL, signer: Signer = SIGNER) -> str:
    return LOCAL.record_route("UDP", signer.sign(params, call_id))


def found(route: str) -> dict[str, str]:
    return route_params(route.strip("<>"))


def test_a_record_route_we_signed_checks_for_its_dialog() -> None:
    route = record_route()
    assert ";sg=" in route
    assert SIGNER.verify(found(route), CALL) is True


def test_a_node_sharing_the_secret_checks_it_too() -> None:
    assert Signer.from_secret("shared secret").verify(found(record_route()), CALL) is True


def test_a_signature_does_not_check_under_another_key() -> None:
    assert Signer.from_secret("another secret").verify(found(record_route()), CALL) is False
    # No secret: a random key per start, which only this instance knows.
    assert Signer.from_secret("").verify(found(record_route()), CALL) is False
    random = Signer.from_secret("")
    assert random.verify(found(record_route(signer=random)), CALL) is True


def test_a_tampered_parameter_breaks_the_signature() -> None:
    route = record_route()
    for old, new in (
        ("fb=203.0.113.5~5060~t~17", "fb=198.51.100.66~5060~t~3"),  # another phone's connection
        ("fa=192.0.2.7~40000~u", "fa=198.51.100.66~5060~u"),
        ("ftag=a1", "ftag=b1"),
        (";ma", ""),  # the media mark dropped
    ):
        assert SIGNER.verify(found(route.replace(old, new)), CALL) is False
    assert SIGNER.verify(found(route.replace(">", ";fb=198.51.100.66~5060~u>")), CALL) is False


def test_a_token_from_another_dialog_does_not_check() -> None:
    # A phone that was in one call through us replays its Route in a request of its own.
    assert SIGNER.verify(found(record_route()), "another-call@attacker") is False


def test_a_route_naming_us_without_a_signature_says_so() -> None:
    assert SIGNER.verify(found(f"<sip:{US}:5060;lr;ftag=a1;fb=198.51.100.66~5060~u>"), CALL) is None


def test_parameter_order_and_the_transport_do_not_matter() -> None:
    # A UA may copy our URI with its parameters in another order (they are a set).
    signed = found(record_route())
    reordered = dict(reversed(signed.items()))
    assert SIGNER.verify(reordered, CALL) is True
    tcp = LOCAL.record_route("UDP", SIGNER.sign(PARAMS, CALL)).replace(";lr", ";transport=tcp;lr")
    assert SIGNER.verify(found(tcp), CALL) is True


def test_an_empty_record_route_is_signed_for_its_dialog_alone() -> None:
    # The ACR's: no parameters, only the Call-ID to bind.
    route = record_route("")
    assert SIGNER.verify(found(route), CALL) is True
    assert SIGNER.verify(found(route), "other") is False


def test_believe_merges_our_signed_entries_and_flags_a_forged_one() -> None:
    request = invite(
        "sip:bob@192.168.1.9",
        routes=(
            f"<sip:{US}:5060;lr>",  # a phone's outbound-proxy Route: ours, unsigned
            record_route(),
            "<sip:198.51.100.1;lr>",
        ),
        to_tag="b1",
    )
    entries = preprocess_routes(request, LOCAL)
    params, forged = SIGNER.believe(entries, request.call_id)
    assert not forged and params is not None and params["fb"] == "203.0.113.5~5060~t~17"
    assert SIGNER.believe([{"lr": ""}], CALL) == (None, False)
    forged_entry = found(record_route()) | {"fa": "198.51.100.66~5060~u"}
    assert SIGNER.believe([found(record_route()), forged_entry], CALL) == (None, True)


def test_our_branch_carries_the_loop_key_and_checks_for_its_hop_only() -> None:
    branch = SIGNER.branch("z9hG4bKfresh1", "7f3a", CALLER)
    assert branch.startswith("z9hG4bKfresh1.") and branch.endswith(".7f3a")
    assert SIGNER.sent_branch(branch, CALLER)
    assert not SIGNER.sent_branch(branch, Address("UDP", "198.51.100.66", 5060))  # a victim
    assert not SIGNER.sent_branch(branch, CALLER._replace(transport="TCP"))
    assert not Signer.from_secret("other").sent_branch(branch, CALLER)
    assert not SIGNER.sent_branch(branch.replace(".7f3a", ".7f3b"), CALLER)
    assert not SIGNER.sent_branch("z9hG4bKfresh1.7f3a", CALLER)  # an old-style branch
    assert not SIGNER.sent_branch("z9hG4bK", CALLER)
    own = SIGNER.branch("z9hG4bKbye", "bye", None)  # a request of our own
    assert SIGNER.sent_branch(own, None) and not SIGNER.sent_branch(own, CALLER)


def test_a_fresh_part_with_dots_still_checks() -> None:
    branch = SIGNER.branch("z9hG4bK.a.b", "k", CALLER)
    assert SIGNER.sent_branch(branch, CALLER)


def test_the_mac_is_hmac_sha256_of_the_derived_key() -> None:
    key = hashlib.sha256(b"sipline routing\x00" + b"shared secret").digest()
    text = "\n".join((CALL, "fa=192.0.2.7~40000~u", "fb=203.0.113.5~5060~t~17", "ftag=a1", "ma="))
    expected = urlsafe_b64encode(hmac.digest(key, text.encode(), "sha256")[:12]).decode()
    assert record_route().endswith(f";sg={expected}>")

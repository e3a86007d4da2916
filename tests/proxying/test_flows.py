"""The dialog's flows in our Record-Route: written on the way out, read back in the dialog."""

from __future__ import annotations

import pytest

from sipline.proxying.flows import (
    decode_flow,
    encode_flow,
    escape_param,
    flow_toward,
    record_route_params,
)
from sipline.sip.address import Address
from sipline.sip.message import Request, parse_message
from sipline.sip.uri import parse_uri
from tests.proxying.test_rules import CALLER, US, invite


def test_record_route_params_keep_the_from_tag_and_the_callers_flow() -> None:
    params = record_route_params(invite(), CALLER)
    assert params == ";ftag=a1;fa=192.0.2.7~40000~u"


def test_a_caller_behind_another_proxy_has_no_flow_recorded() -> None:
    request = invite(
        vias=("SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1", "SIP/2.0/UDP h;branch=z9hG4bK2")
    )
    assert record_route_params(request, CALLER) == ";ftag=a1"


def test_in_dialog_requests_from_the_caller_go_to_the_callees_flow() -> None:
    params = {"ftag": "a1", "fa": "192.0.2.7~40000~u", "fb": "192.0.2.9~5062~t~17"}
    from_caller = invite("sip:bob@192.168.1.9", to_tag="b1", method="BYE")
    assert flow_toward(from_caller, params) == Address("TCP", "192.0.2.9", 5062, 17)


def test_in_dialog_requests_from_the_callee_go_to_the_callers_flow() -> None:
    params = {"ftag": "a1", "fa": "192.0.2.7~40000~u"}
    text = bytes(invite(method="BYE", to_tag="b1")).replace(b"tag=a1", b"tag=zz")
    from_callee = parse_message(text)
    assert isinstance(from_callee, Request)
    assert flow_toward(from_callee, params) == CALLER


def test_without_a_recorded_flow_the_request_uri_decides() -> None:
    assert flow_toward(invite(to_tag="b1"), {"ftag": "a1"}) is None
    assert flow_toward(invite(to_tag="b1"), {"lr": ""}) is None


@pytest.mark.parametrize(
    "address",
    [
        Address("UDP", "192.0.2.7", 5060),
        Address("TCP", "192.0.2.7", 41000, 12),
        Address("TLS", "192.0.2.7", 41001, 13),  # a phone's TLS connection, not TCP's
        Address("UDP", "2001:db8::1", 5060),
    ],
)
def test_flows_survive_the_round_trip_through_a_uri_parameter(address: Address) -> None:
    text = encode_flow(address)
    assert decode_flow(text) == address
    parse_uri(f"sip:{US};lr;fb={text}")  # a valid URI parameter value


def test_garbled_flows_are_ignored() -> None:
    assert decode_flow("nonsense") is None
    assert decode_flow("1.2.3.4~x~u") is None


def test_tags_that_are_not_uri_safe_are_escaped() -> None:
    assert escape_param("abc-1") == "abc-1"
    assert escape_param("a%b`c") == "a%25b%60c"

"""RFC 4028 on each leg: what the A leg negotiates as UAS, what the B leg asks and learns."""

from __future__ import annotations

import pytest

from b2bua.sessiontimer import (
    SessionTimer,
    TooSmall,
    from_response,
    negotiate_uas,
    offer_headers,
    session_expires,
)
from sipline.sip.errors import ParseError
from sipline.sip.message import Request, Response


def request(*headers: tuple[str, str]) -> Request:
    message = Request("INVITE", "sip:1@example.com")
    for name, value in headers:
        message.headers.add(name, value)
    return message


def test_a_caller_without_the_extension_gets_us_as_refresher_at_our_interval() -> None:
    assert negotiate_uas(request(), 1800, 90) == SessionTimer(1800, we_refresh=True)


def test_a_caller_that_supports_timers_refreshes_itself_unless_it_names_us() -> None:
    supported = ("Supported", "100rel, timer")
    assert negotiate_uas(request(supported), 1800, 90) == SessionTimer(1800, we_refresh=False)
    asked = ("Session-Expires", "600;refresher=uas")
    assert negotiate_uas(request(supported, asked), 1800, 90) == SessionTimer(600, we_refresh=True)


def test_the_interval_is_the_smaller_of_both_wishes_but_never_below_either_min_se() -> None:
    supported = ("Supported", "timer")
    assert negotiate_uas(request(supported, ("Session-Expires", "3600")), 1800, 90).interval == 1800  # type: ignore[union-attr]
    low = request(supported, ("Session-Expires", "300"), ("Min-SE", "400"))
    assert negotiate_uas(low, 1800, 90).interval == 400  # type: ignore[union-attr]


def test_an_interval_below_our_min_se_is_refused_with_422() -> None:
    assert negotiate_uas(request(("Session-Expires", "60")), 1800, 90) == TooSmall(90)


def test_the_timer_fires_at_half_the_interval_for_the_refresher_and_near_its_end_otherwise() -> (
    None
):
    assert SessionTimer(1800, True).due_in == 900
    assert SessionTimer(1800, False).due_in == 1800 - 32
    assert SessionTimer(90, False).due_in == 60


def test_headers_name_the_refresher_from_each_side() -> None:
    assert SessionTimer(600, True).request_headers() == [("Session-Expires", "600;refresher=uac")]
    assert SessionTimer(600, False).response_headers() == [
        ("Session-Expires", "600;refresher=uac"), ("Require", "timer"),
    ]  # fmt: skip
    assert offer_headers(1800, 90) == [("Session-Expires", "1800"), ("Min-SE", "90")]


def test_the_b_leg_learns_its_timer_from_the_2xx() -> None:
    ok = Response(200, "OK")
    assert from_response(ok) is None
    ok.headers.add("Session-Expires", "900;refresher=uas")
    assert from_response(ok) == SessionTimer(900, we_refresh=False)
    ok.headers.set("x", "900;refresher=uac")  # compact form
    assert from_response(ok) == SessionTimer(900, we_refresh=True)


def test_a_bad_session_expires_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        session_expires(request(("Session-Expires", "soon")))

"""ng requests and replies matched by cookie (sipline.ng.exchanges): plain calls, a made-up clock."""

from __future__ import annotations

import pytest

from sipline.ng.bencode import decode, encode
from sipline.ng.exchanges import Exchanges, NgError, NgTimeout, outcome


def reply_to(datagram: bytes, **reply: object) -> bytes:
    cookie, _, _ = datagram.partition(b" ")
    return cookie + b" " + encode(reply)


def test_a_request_is_a_cookie_a_space_and_the_bencoded_dictionary() -> None:
    exchanges: Exchanges[str] = Exchanges(prefix="p1")
    datagram = exchanges.request({"command": "ping"}, 0.0, "context")
    assert datagram == b"p1_1 d7:command4:pinge"


def test_every_request_gets_a_cookie_of_its_own() -> None:
    exchanges: Exchanges[int] = Exchanges()
    cookies = {
        exchanges.request({"command": "ping"}, 0.0, n).partition(b" ")[0] for n in range(100)
    }
    assert len(cookies) == 100 and len(exchanges) == 100


def test_two_clients_never_share_cookies_so_a_restart_cannot_get_stale_replies() -> None:
    first = Exchanges[None]().request({"command": "ping"}, 0.0, None)
    second = Exchanges[None]().request({"command": "ping"}, 0.0, None)
    assert first.partition(b" ")[0] != second.partition(b" ")[0]


def test_a_message_without_a_command_is_refused() -> None:
    with pytest.raises(ValueError, match="command"):
        Exchanges[None]().request({"call-id": "x"}, 0.0, None)


def test_a_reply_is_matched_to_its_request_by_cookie_in_any_order() -> None:
    exchanges: Exchanges[str] = Exchanges()
    a = exchanges.request({"command": "ping"}, 0.0, "a")
    b = exchanges.request({"command": "query", "call-id": "c1"}, 0.0, "b")

    pending, reply = exchanges.receive(reply_to(b, result="ok", totals={})) or (None, None)
    assert pending is not None and pending.context == "b" and pending.command == "query"
    assert reply == {"result": "ok", "totals": {}}
    pending, reply = exchanges.receive(reply_to(a, result="pong")) or (None, None)
    assert pending is not None and pending.context == "a" and reply == {"result": "pong"}
    assert len(exchanges) == 0


def test_a_second_copy_of_a_reply_and_a_reply_to_nothing_are_ignored() -> None:
    exchanges: Exchanges[str] = Exchanges()
    datagram = exchanges.request({"command": "ping"}, 0.0, "a")
    assert exchanges.receive(reply_to(datagram, result="pong")) is not None
    assert exchanges.receive(reply_to(datagram, result="pong")) is None
    assert exchanges.receive(b"someone_else d6:result4:ponge") is None
    assert exchanges.receive(b"garbage") is None


def test_an_error_reply_becomes_an_ng_error_with_the_relay_s_reason() -> None:
    error = outcome("answer", encode({"result": "error", "error-reason": "Unknown call-id"}))
    assert isinstance(error, NgError) and not isinstance(error, NgTimeout)
    assert error.reason == "Unknown call-id" and error.command == "answer"
    assert str(error) == "ng answer failed: Unknown call-id"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not bencode", "undecodable reply"),
        (b"li1ee", "reply is not a dictionary"),
        (b"d3:sdp1:xe", "reply without a result"),
        (b"d6:result5:errore", "no reason given"),
    ],
)
def test_a_reply_that_says_nothing_usable_is_an_ng_error(body: bytes, reason: str) -> None:
    error = outcome("offer", body)
    assert isinstance(error, NgError) and error.reason.startswith(reason)


def test_an_unanswered_request_is_sent_again_unchanged_then_given_up_on() -> None:
    exchanges: Exchanges[str] = Exchanges(timeout=0.5, retries=3)
    datagram = exchanges.request({"command": "offer", "call-id": "c"}, 10.0, "call")
    timeline = []
    for now in (10.4, 10.5, 10.9, 11.0, 11.5, 11.9, 12.0):
        again, failed = exchanges.expire(now)
        timeline.append((now, len(again), [p.context for p in failed]))
        assert all(d == datagram for d in again)  # the same cookie: the relay answers once
    assert timeline == [
        (10.4, 0, []), (10.5, 1, []), (10.9, 0, []), (11.0, 1, []), (11.5, 1, []),
        (11.9, 0, []), (12.0, 0, ["call"]),
    ]  # fmt: skip
    assert len(exchanges) == 0


def test_with_no_retries_the_first_timeout_fails_the_request() -> None:
    exchanges: Exchanges[str] = Exchanges(timeout=1.0, retries=0)
    exchanges.request({"command": "ping"}, 0.0, "p")
    again, failed = exchanges.expire(1.0)
    assert again == [] and [p.sends for p in failed] == [1]


def test_next_due_is_the_earliest_request_s_and_a_reply_takes_its_request_out_at_once() -> None:
    exchanges: Exchanges[str] = Exchanges(timeout=0.5)
    assert exchanges.next_due() is None
    first = exchanges.request({"command": "ping"}, 1.0, "first")
    exchanges.request({"command": "ping"}, 1.2, "second")
    assert exchanges.next_due() == 1.5
    exchanges.expire(1.5)  # the first is sent again and now falls due after the second
    assert exchanges.next_due() == pytest.approx(1.7)
    exchanges.receive(reply_to(first, result="pong"))
    assert exchanges.next_due() == pytest.approx(1.7) and len(exchanges) == 1


def test_abandon_hands_back_every_request_in_flight() -> None:
    exchanges: Exchanges[int] = Exchanges()
    for n in range(3):
        exchanges.request({"command": "ping"}, 0.0, n)
    assert [p.context for p in exchanges.abandon()] == [0, 1, 2]
    assert len(exchanges) == 0 and exchanges.next_due() is None


def test_the_request_carries_sdp_bytes_as_they_are() -> None:
    exchanges: Exchanges[None] = Exchanges(prefix="x")
    sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    datagram = exchanges.request({"command": "offer", "sdp": sdp}, 0.0, None)
    assert decode(datagram.partition(b" ")[2])["sdp"] == sdp.decode()


def test_timeout_and_retries_must_make_sense() -> None:
    with pytest.raises(ValueError):
        Exchanges[None](timeout=0)
    with pytest.raises(ValueError):
        Exchanges[None](retries=-1)

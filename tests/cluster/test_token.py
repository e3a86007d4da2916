"""Admin tokens: what they cover, for how long, and only once."""

from __future__ import annotations

import pytest

from sipline.cluster.token import WINDOW, Replays, derive_key, sign, verify

KEY = derive_key("shared secret")
BODY = b'{"node":"proxy@127.0.0.1:5060"}'
NOW = 1_800_000_000.0


def check(header: str, *, method: str = "POST", path: str = "/drain", body: bytes = BODY,
          now: float = NOW, key: bytes = KEY, replays: Replays | None = None) -> str:  # fmt: skip
    return verify(key, header, method, path, body, now, replays or Replays())


def test_a_fresh_token_is_taken_once() -> None:
    header = sign(KEY, "POST", "/drain", BODY, NOW)
    replays = Replays()
    assert check(header, replays=replays) == ""
    assert check(header, replays=replays) == "replayed"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"path": "/resume"}, "bad_mac"),
        ({"method": "GET"}, "bad_mac"),
        ({"body": b'{"node":"acr@127.0.0.1:5080"}'}, "bad_mac"),  # made for another node
        ({"key": derive_key("another secret")}, "bad_mac"),
        ({"now": NOW + WINDOW + 2}, "stale"),
        ({"now": NOW - WINDOW - 2}, "stale"),
    ],
)
def test_a_token_covers_the_request_the_node_and_the_time(change: dict, reason: str) -> None:
    assert check(sign(KEY, "POST", "/drain", BODY, NOW), **change) == reason


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        "SiplineAdmin ts=x,nonce=0123456789abcdef,mac=" + "0" * 64,
        "SiplineAdmin ts=1,nonce=short,mac=" + "0" * 64,
        "SiplineAdmin ts=1,nonce=0123456789abcdef,mac=00",
        "SiplineAdmin garbage",
    ],
)
def test_malformed_or_missing_headers_are_refused(header: str) -> None:
    assert check(header) in ("missing", "malformed")


def test_the_nonces_remembered_are_bounded() -> None:
    replays = Replays(capacity=3)
    for _ in range(3):
        assert check(sign(KEY, "POST", "/drain", BODY, NOW), replays=replays) == ""
    assert check(sign(KEY, "POST", "/drain", BODY, NOW), replays=replays) == "too_many"
    # Once the window has passed, the old ones are forgotten and room comes back.
    later = NOW + 2 * WINDOW + 1
    assert check(sign(KEY, "POST", "/drain", BODY, later), now=later, replays=replays) == ""


def test_derived_keys_differ_by_purpose() -> None:
    assert derive_key("s") != derive_key("s", b"other") and len(derive_key("s")) == 32

"""The best final response (RFC 3261 §16.7 steps 6 and 7): classes, challenges, 503."""

from __future__ import annotations

import pytest

from sipline.proxying.responses import best_response, for_upstream, rank, with_challenges
from sipline.sip.message import Headers, Response


def answer(status: int, *headers: tuple[str, str]) -> Response:
    return Response(status, f"reason {status}", Headers(list(headers)))


# -- best response (§16.7 step 6) -------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "best"),
    [
        ([486, 603], 603),  # a 6xx wins over any other class
        ([404, 600, 302], 600),
        ([500, 486, 302], 302),  # else the lowest class
        ([503, 500], 500),
        ([486, 407], 407),  # in 4xx, what helps a retry comes first
        ([408, 401], 401),
        ([480, 484], 484),
        ([408, 486, 480], 486),  # and the generic ones last
        ([408, 480], 408),  # a tie: the first received
        ([487], 487),
    ],
)
def test_best_response_table(statuses: list[int], best: int) -> None:
    assert best_response([answer(s) for s in statuses]).status == best


def test_rank_orders_6xx_then_classes() -> None:
    assert rank(603) < rank(302) < rank(404) < rank(500)


def test_a_chosen_challenge_carries_every_other_challenge() -> None:
    # §16.7 step 7.
    first = answer(407, ("Proxy-Authenticate", 'Digest realm="a"'))
    second = answer(401, ("WWW-Authenticate", 'Digest realm="b"'))
    third = answer(407, ("Proxy-Authenticate", 'Digest realm="c"'))
    best = with_challenges(first, [first, second, third, answer(486)])
    assert best.headers.get_all("proxy-authenticate") == ['Digest realm="a"', 'Digest realm="c"']
    assert best.headers.get_all("www-authenticate") == ['Digest realm="b"']


def test_other_responses_are_left_as_they_are() -> None:
    busy = answer(486)
    assert with_challenges(busy, [busy, answer(407, ("Proxy-Authenticate", "x"))]) is busy
    assert "proxy-authenticate" not in busy.headers


def test_a_503_goes_upstream_as_500() -> None:
    unavailable = answer(503, ("Retry-After", "30"))
    sent = for_upstream(unavailable)
    assert sent.status == 500
    assert sent.reason == "Server Internal Error: next hop unavailable (reason 503)"
    assert "retry-after" not in sent.headers
    assert for_upstream(answer(486)).status == 486

"""The best final response of a proxied request (RFC 3261 §16.7 steps 6 and 7).

Which of the final responses a proxy collected goes upstream, with the
challenges of all of them, and a 503 about the next hop turned into 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sipline.sip.message import Response

# §16.7 step 6: within the chosen class, answers that let the caller retry
# usefully come first; the generic ones (a timeout, nobody there, a
# server's trouble) only when nothing says more, and a 503 (which is about
# the next hop only) last of all.
PREFERRED = frozenset((401, 407, 415, 420, 484))
GENERIC = frozenset((408, 480, 500))
CHALLENGES = ("www-authenticate", "proxy-authenticate")


def rank(status: int) -> tuple[int, int]:
    """Smaller is better (§16.7 step 6): 6xx first, then the lowest class."""
    category = status // 100
    if category == 6:
        return (0, 0)
    if status in PREFERRED:
        return (category, 0)
    if status == 503:
        return (category, 3)
    return (category, 2 if status in GENERIC else 1)


def best_response(responses: Sequence[Response]) -> Response:
    """The final response to send upstream among those stored (§16.7 step 6);
    the first received wins a tie."""
    return min(responses, key=lambda response: rank(response.status))


def with_challenges(best: Response, responses: Iterable[Response]) -> Response:
    """§16.7 step 7: a 401/407 sent upstream carries the challenges of every
    401 and 407 received in this context, unchanged."""
    if best.status not in (401, 407):
        return best
    for response in responses:
        if response is best or response.status not in (401, 407):
            continue
        for key in CHALLENGES:
            for value in response.headers.get_all(key):
                best.headers.add(key, value)
    return best


def for_upstream(response: Response) -> Response:
    """§16.7 step 6: a 503 chosen as best goes upstream as 500 (the 503 is about
    the next hop, not about anything the caller can retry elsewhere)."""
    if response.status == 503:
        response.status = 500
        response.reason = f"Server Internal Error: next hop unavailable ({response.reason})"
        response.headers.remove("retry-after")
    return response

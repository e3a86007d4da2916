"""The response context (RFC 3261 §16.7): q groups, failover, the fork's own answers."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.forking import Fork, q_groups
from proxy.routing import Target
from sipline.sip.address import Address
from sipline.sip.message import Headers, Request, Response


def answer(status: int, *headers: tuple[str, str]) -> Response:
    return Response(status, f"reason {status}", Headers(list(headers)))


def request(method: str = "INVITE") -> Request:
    return Request(
        method,
        "sip:bob@example.com",
        Headers(
            [
                ("Via", "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1"),
                ("From", "<sip:alice@example.com>;tag=a"),
                ("To", "<sip:bob@example.com>"),
                ("Call-ID", "c1"),
                ("CSeq", f"1 {method}"),
                ("Max-Forwards", "70"),
            ]
        ),
    )


def target(port: int) -> Target:
    return Target(Address("UDP", "192.0.2.9", port))


# -- q groups --------------------------------------------------------------------------
@dataclass
class Contact:
    name: str
    q: float


def test_contacts_fork_in_parallel_within_a_q_value_highest_first() -> None:
    contacts = [Contact("a", 0.5), Contact("b", 1.0), Contact("c", 0.5), Contact("d", 0.9)]
    groups = q_groups(contacts)
    assert [[c.name for c in group] for group in groups] == [["b"], ["d"], ["a", "c"]]


def test_equal_q_contacts_are_one_group() -> None:
    assert len(q_groups([Contact("a", 1.0), Contact("b", 1.0)])) == 1


# -- the response context ------------------------------------------------------------------
def test_the_next_q_group_starts_when_every_branch_of_this_one_failed() -> None:
    fork = Fork(None, request(), [[target(1), target(2)], [target(3)]])
    assert fork.next_group() == [target(1), target(2)]
    one, two = fork.add(target(1)), fork.add(target(2))
    fork.finish(one, answer(486))
    assert fork.pending == 1
    fork.finish(two, answer(480))
    assert fork.pending == 0
    assert fork.next_group() == [target(3)]
    three = fork.add(target(3))
    fork.finish(three, answer(404))
    assert fork.next_group() is None
    assert fork.best().status == 486


def test_a_6xx_ends_the_search() -> None:
    fork = Fork(None, request(), [[target(1)], [target(2)]])
    fork.next_group()
    fork.finish(fork.add(target(1)), answer(603))
    assert fork.stopped and fork.next_group() is None
    assert fork.best().status == 603


def test_a_cancelled_invite_is_answered_487() -> None:
    fork = Fork(None, request(), [[target(1)], [target(2)]])
    fork.next_group()
    branch = fork.add(target(1))
    fork.cancelled = True
    fork.finish(branch, None)
    assert fork.next_group() is None
    best = fork.best()
    assert best.status == 487 and "cancelled" in best.reason
    assert best.to.tag is not None


def test_failover_goes_on_only_for_the_statuses_it_names() -> None:
    fork = Fork(None, request(), [[target(1)], [target(2)], [target(3)]], frozenset((408, 503)))
    fork.next_group()
    fork.finish(fork.add(target(1)), answer(503))
    assert fork.next_group() == [target(2)]
    fork.finish(fork.add(target(2)), answer(486))
    assert fork.next_group() is None
    assert fork.best().status == 486


def test_failover_exhausted_answers_the_best_of_all() -> None:
    fork = Fork(None, request(), [[target(1)], [target(2)]], frozenset((408, 503)))
    fork.next_group()
    fork.finish(fork.add(target(1)), answer(503))
    fork.next_group()
    fork.finish(fork.add(target(2)), answer(503))
    assert fork.next_group() is None
    assert fork.best().status == 500


def test_no_answer_at_all_is_a_408_of_our_own() -> None:
    fork = Fork(None, request("MESSAGE"), [[target(1)]])
    fork.next_group()
    fork.finish(fork.add(target(1)), None)
    best = fork.best()
    assert best.status == 408 and best.reason.startswith("Request Timeout")


def test_a_branch_ends_once() -> None:
    fork = Fork(None, request(), [[target(1), target(2)]])
    fork.next_group()
    branch = fork.add(target(1))
    fork.add(target(2))
    fork.finish(branch, answer(486))
    fork.finish(branch, answer(500))
    assert fork.pending == 1 and [r.status for r in fork.finals] == [486]
    assert fork.running() == [fork.branches[1]]

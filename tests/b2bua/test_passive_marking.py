"""A next hop that fails one call is skipped by the next calls at once (issue 12,
point 3): silent while an INVITE waits, a 503, no answer in failover_timeout.
It is then probed fast and back as soon as it answers; with every hop down,
calls still try them all."""

from __future__ import annotations

from sipline.sip.message import Request
from tests.b2bua.support import ACR1, ACR2, PROXY, answer, b2bua, invite, of


def first_hops(node, count: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Where the B-leg INVITEs of ``count`` new calls go first (each answered 180 at once)."""
    ports = []
    for _ in range(count):
        node.receive(invite(), PROXY)
        ((b, dest),) = of(node.take(), "INVITE")
        node.receive(answer(b, 180), dest)
        node.take()
        ports.append(dest.port)
    return ports


def test_a_hop_silent_while_an_invite_waits_is_skipped_by_the_next_calls_at_once() -> None:
    handler, node = b2bua(failover_timeout=2.0, silence_timeout=0.4)
    node.receive(invite(), PROXY)
    ((_, dest),) = of(node.take(), "INVITE")
    assert dest == ACR1
    node.advance(0.35)
    assert handler.calls.hops.acr[0].up  # not yet
    node.advance(0.1)  # 0.45 s without a word from ACR1
    assert not handler.calls.hops.acr[0].up
    assert first_hops(node, 4) == [5082] * 4
    assert handler.calls.counts["hops_down"] == 1
    node.advance(1.5)  # the first call still waits its failover timeout, as its deadline says
    assert [d for _, d in of(node.take(), "INVITE")] == [ACR1]  # timer A, at 1.5
    node.advance(0.1)
    assert [d for _, d in of(node.take(), "INVITE")] == [ACR2]


def test_one_slow_invite_does_not_mark_down_a_hop_that_answers_others() -> None:
    handler, node = b2bua(failover_timeout=2.0, silence_timeout=0.4)
    node.receive(invite(), PROXY)  # to ACR1, which never answers this one
    node.take()
    node.advance(0.1)
    assert first_hops(node, 2) == [5082, 5080]  # ACR1 answers this one
    node.advance(0.4)
    node.take()
    assert handler.calls.hops.acr[0].up
    assert first_hops(node, 2) == [5082, 5080]


def test_a_503_marks_its_hop_down_and_the_call_goes_on_at_the_next() -> None:
    handler, node = b2bua()
    node.receive(invite(), PROXY)
    ((b, dest),) = of(node.take(), "INVITE")
    node.receive(answer(b, 503, extra=[("Retry-After", "5")]), dest)
    assert [d for _, d in of(node.take(), "INVITE")] == [ACR2]
    assert not handler.calls.hops.acr[0].up
    assert first_hops(node, 3) == [5082] * 3


def test_no_answer_within_the_failover_timeout_marks_the_hop_down() -> None:
    handler, node = b2bua(failover_timeout=0.3, silence_timeout=1.0)
    node.receive(invite(), PROXY)
    node.take()
    node.advance(0.35)
    assert [d for _, d in of(node.take(), "INVITE")] == [ACR2]
    assert not handler.calls.hops.acr[0].up
    assert first_hops(node, 2) == [5082, 5082]


def test_a_hop_marked_down_is_probed_fast_and_back_after_probe_successes_answers() -> None:
    handler, node = b2bua(probe_successes=2, probe_down_interval=0.5, probe_interval=5.0)
    handler.probing = True
    node.advance(0.02)  # the first round
    for probe, dest in of(node.take(), "OPTIONS"):
        node.receive(answer(probe, 200, tag="x"), dest)
    node.receive(invite(), PROXY)
    ((b, _),) = of(node.take(), "INVITE")
    node.receive(answer(b, 503), ACR1)
    node.take()
    answered = []
    for _ in range(4):
        node.advance(0.26)
        for probe, dest in of(node.take(), "OPTIONS"):
            assert dest == ACR1  # ACR2, up, waits its 5 s
            answered.append(round(node.clock.now - 1000.0, 2))
            node.receive(answer(probe, 200, tag="x"), dest)
    assert answered == [0.28, 0.8]  # at once, then every probe_down_interval
    assert handler.calls.hops.acr[0].up
    assert sorted(first_hops(node, 2)) == [5080, 5082]


def test_a_dead_hop_gets_each_fast_probe_once_and_stays_down() -> None:
    handler, node = b2bua(probe_down_interval=0.5, probe_interval=5.0)
    handler.probing = True
    node.receive(invite(), PROXY)
    ((b, _),) = of(node.take(), "INVITE")
    node.receive(answer(b, 503), ACR1)
    node.take()
    probes = []
    for _ in range(100):
        node.advance(0.1)
        probes += [m for m, d in node.take() if d == ACR1]
    assert all(isinstance(m, Request) and m.method == "OPTIONS" for m in probes)
    assert len({m.call_id for m in probes}) == len(probes) >= 19  # none sent twice
    assert not handler.calls.hops.acr[0].up


def test_with_every_hop_down_calls_still_try_them_all_the_one_heard_from_last_first() -> None:
    handler, node = b2bua(failover_timeout=2.0, silence_timeout=0.4)
    for _ in range(2):
        node.receive(invite(), PROXY)
        ((b, dest),) = of(node.take(), "INVITE")
        node.receive(answer(b, 503), dest)  # ACR1, then ACR2 0.1 s later
        node.take()
        node.advance(0.1)
    assert not any(hop.up for hop in handler.calls.hops.acr)
    node.receive(invite(), PROXY)
    ((b, dest),) = of(node.take(), "INVITE")
    assert dest == ACR2  # refused by nobody: the last one heard from first
    node.receive(answer(b, 503), dest)
    assert [d for _, d in of(node.take(), "INVITE")] == [ACR1]


def test_a_call_that_rang_goes_to_the_next_hop_once_its_hop_dies() -> None:
    """A 180, then the hop dies: the call is not left ringing till timer C (190 s).
    Once the hop is down and has said nothing to calls or probes for
    failover_timeout, the call is CANCELled there and goes to the next hop,
    under a fresh Call-ID (an answer from the dead hop is then a ghost)."""
    handler, node = b2bua(failover_timeout=1.0)
    node.receive(invite(), PROXY)
    ((first, dest),) = of(node.take(), "INVITE")
    assert dest == ACR1
    node.receive(answer(first, 180), ACR1)
    node.take()
    node.advance(1.5)
    assert of(node.take(), "INVITE") == []  # it rings on while ACR1 is up
    node.receive(invite(), PROXY)  # the next call: ACR2 first (round robin), which rings
    ((b, dest),) = of(node.take(), "INVITE")
    assert dest == ACR2
    node.receive(answer(b, 180), ACR2)
    node.receive(invite(), PROXY)  # the one after: ACR1, which answers 503, down now
    ((b, dest),) = of(node.take(), "INVITE")
    assert dest == ACR1
    node.receive(answer(b, 503), ACR1)
    ((b, dest),) = of(node.take(), "INVITE")  # that call at ACR2 now, which rings
    node.receive(answer(b, 180), ACR2)
    node.take()
    assert not handler.calls.hops.acr[0].up
    node.advance(0.9)
    assert of(node.take(), "INVITE") == []  # ACR1 spoke 0.9 s ago: it may live
    node.advance(0.2)  # silent for failover_timeout, probes unanswered
    sent = node.take()
    ((second, dest),) = of(sent, "INVITE")
    assert dest == ACR2 and second.call_id != first.call_id
    assert [d for _, d in of(sent, "CANCEL")] == [ACR1]
    assert handler.calls.counts["failovers"] == 2  # the 503's, and this one

"""``python -m bench.b2bua_profile [--calls N] [--rate CPS] [--profile FILE]``: the B2BUA's
CPU per call in process, without sockets.

N whole calls (INVITE, 180, 200, ACK, BYE, 200 on both legs, as the sipp
scenarios ``b2bua_uac.xml`` and ``b2bua_uas.xml`` send them) go as bytes
through what a node does with a datagram: parse_message, the real
TransactionLayer, the B2BUA handler, serialising what goes out. A fake clock
advances 1/CPS per call and the layer's and handler's timers run every 10 ms
of it, so transactions linger (timer J/K, 32 s/5 s) as they do at that rate
and the cyclic GC, tuned as ``tune_gc`` tunes a node, scans what they keep.
The peers (sipp) are string templates; their own time is measured apart and
left out of the figure. ``--profile FILE`` writes a cProfile of the run;
under ``valgrind --tool=callgrind`` use a small N for instruction counts.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import sys
import time
from collections.abc import Callable

from b2bua.handler import B2buaHandler
from sipline.config import Settings
from sipline.net.node import GC_THRESHOLDS
from sipline.net.wire import Wire
from sipline.sip.address import Address

US = Address("UDP", "127.0.0.1", 5070)
UAC = Address("UDP", "127.0.0.1", 5060)  # sipp as the proxy
UAS = Address("UDP", "127.0.0.1", 5080)  # sipp as the ACR pair
TIMER_EVERY = 0.01
SDP = (
    "v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the peers: sipp's messages as templates --------------------------------------------------
def _lines(data: bytes) -> dict[str, str]:
    """The first value of each header sipp's [last_*] copies, by lower-case name."""
    found: dict[str, str] = {}
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        found.setdefault(name.strip().lower(), value.strip())
    return found


def uac_invite(n: int) -> bytes:
    body = SDP.format(n=n)
    return (
        f"INVITE sip:+15551230000@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-uac-{n}-1;rport\r\n"
        f"From: <sip:caller@example.com>;tag=1SIPpTag00{n}\r\n"
        f"To: <sip:+15551230000@127.0.0.1:5070>\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:5060;transport=UDP>\r\nMax-Forwards: 70\r\n"
        f"Record-Route: <sip:127.0.0.1:5060;lr;proxy=hidden>\r\n"
        f"P-Asserted-Identity: <sip:caller@example.com>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def uac_in_dialog(n: int, method: str, cseq: int, to: str) -> bytes:
    return (
        f"{method} sip:b2bua@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-uac-{n}-{cseq}{method};rport\r\n"
        f"Route: <sip:127.0.0.1:5060;lr;proxy=hidden>\r\n"
        f"From: <sip:caller@example.com>;tag=1SIPpTag00{n}\r\nTo: {to}\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:caller@127.0.0.1:5060;transport=UDP>\r\nMax-Forwards: 70\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def uas_response(request: bytes, status: str, n: int, *, tag: bool, sdp: bool) -> bytes:
    h = _lines(request)
    to = f"{h['to']};tag=1SIPpTag01{n}" if tag else h["to"]
    body = SDP.format(n=n) if sdp else ""
    kind = "Content-Type: application/sdp\r\n" if sdp else ""
    return (
        f"SIP/2.0 {status}\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\nTo: {to}\r\n"
        f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n"
        f"Contact: <sip:acr@127.0.0.1:5080;transport=UDP>\r\n{kind}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _one(out: list[tuple[bytes, Address]], dest: Address, start: bytes) -> bytes:
    for data, where in out:
        if where == dest and data.startswith(start):
            return data
    raise AssertionError(f"nothing starting {start!r} to {dest}: {[d[:20] for d, _ in out]}")


# -- the run -----------------------------------------------------------------------------------
OneCall = Callable[[int], float]  # call n, end to end; the CPU seconds spent playing the peers


def b2bua_call(wire: Wire, n: int) -> float:
    """Call ``n``: INVITE, 180, 200, ACK, BYE, 200 across both legs; the peers' CPU seconds."""
    peers = 0.0
    p = time.process_time()
    invite = uac_invite(n)
    peers += time.process_time() - p
    wire.receive(invite, UAC)
    b_invite = _one(wire.take(), UAS, b"INVITE")
    p = time.process_time()
    ringing = uas_response(b_invite, "180 Ringing", n, tag=True, sdp=False)
    ok = uas_response(b_invite, "200 OK", n, tag=True, sdp=True)
    peers += time.process_time() - p
    wire.receive(ringing, UAS)
    wire.receive(ok, UAS)
    a_ok = _one(wire.take(), UAC, b"SIP/2.0 200")
    p = time.process_time()
    to = _lines(a_ok)["to"]
    ack = uac_in_dialog(n, "ACK", 1, to)
    bye = uac_in_dialog(n, "BYE", 2, to)
    peers += time.process_time() - p
    wire.receive(ack, UAC)
    wire.receive(bye, UAC)
    b_bye = _one(wire.take(), UAS, b"BYE")
    p = time.process_time()
    bye_ok = uas_response(b_bye, "200 OK", n, tag=False, sdp=False)
    peers += time.process_time() - p
    wire.receive(bye_ok, UAS)
    wire.take()
    return peers


def drive(
    clock: Clock, wire: Wire, one_call: OneCall, calls: int, rate: float, profile: str | None
) -> tuple[float, float]:
    """``calls`` calls at ``rate`` on the fake clock with the node's GC settings and
    its tick every TIMER_EVERY; (CPU seconds in all, of which the peers')."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    peers = 0.0
    next_timers = clock.now + TIMER_EVERY
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    started = time.process_time()
    for n in range(calls):
        peers += one_call(n)
        clock.now += 1.0 / rate
        if clock.now >= next_timers:
            next_timers = clock.now + TIMER_EVERY
            wire.tick(clock.now)  # the layer's timers, then the handler's
            wire.take()
    total = time.process_time() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)  # type: ignore[arg-type]
    return total, peers


def run(calls: int, rate: float, profile: str | None = None) -> dict[str, float]:
    clock = Clock()
    settings = Settings(b2bua={"acr": ["127.0.0.1:5080", "127.0.0.1:5080"], "media_relay": ""})  # type: ignore[arg-type]
    handler = B2buaHandler(settings.b2bua, server_header=settings.sip.server_header, clock=clock)
    wire = Wire(handler, clock, US)
    handler.probing = False
    total, peers = drive(clock, wire, lambda n: b2bua_call(wire, n), calls, rate, profile)
    assert len(handler) == 0, "every call ended"
    return figures(calls, total, peers, wire)


def figures(calls: int, total: float, peers: float, wire: Wire) -> dict[str, float]:
    """An in-process run's figures: CPU per call less the peers' share, and what is left."""
    return {
        "calls": calls,
        "us_per_call": (total - peers) / calls * 1e6,
        "peers_us_per_call": peers / calls * 1e6,
        "transactions": len(wire.layer),
        "gc_tracked": len(gc.get_objects()),
    }


Run = Callable[[int, float, "str | None"], dict[str, float]]


def cli(argv: list[str], prog: str, role: str, run: Run, doc: str | None) -> int:
    """``prog [--calls N] [--rate CPS] [--profile FILE]``: run and print the figures."""
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000.0, help="calls/s of the fake clock")
    parser.add_argument("--profile", help="write a cProfile of the run to this file")
    args = parser.parse_args(argv)
    result = run(args.calls, args.rate, args.profile)
    print(
        f"{result['calls']} calls: {result['us_per_call']:.0f} us CPU per call in the {role} "
        f"(peers {result['peers_us_per_call']:.0f} us apart); at the end "
        f"{result['transactions']} transactions, {result['gc_tracked']} GC-tracked objects"
    )
    return 0


def main(argv: list[str]) -> int:
    return cli(argv, "python -m bench.b2bua_profile", "B2BUA", run, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

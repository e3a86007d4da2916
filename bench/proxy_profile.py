"""``python -m bench.proxy_profile [--calls N] [--rate CPS] [--profile FILE]``: the
proxy's CPU per relayed call in process, without sockets (issue 14).

N calls of the relay scenario (``bench/scenarios/relay.xml``: INVITE, 100,
200 record-routed, ACK, BYE along the route set, 200; the UAC trusted by
address and port, as ``python -m bench compare --scenario relay`` runs it)
go as bytes through what a node does with a datagram: the guard,
parse_message, the real TransactionLayer, the proxy's handler and router,
serialising what goes out. A fake clock advances 1/CPS per call and the
timers run every 10 ms of it, so transactions linger (timer J/K/L, 32 s/5 s)
as they do at that rate and the cyclic GC, tuned as ``tune_gc`` tunes a
node, scans what they keep. The peers (sipp) are string templates; their
time is measured apart and left out. ``--profile FILE`` writes a cProfile
of the run. A quick figure to compare changes by; ``bench.instructions``
counts the real process.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from bench.b2bua_profile import SDP, Clock, _lines, _one, cli, drive, figures
from proxy.router import Router
from proxy.server import ProxyHandler
from sipline.config import Settings
from sipline.net.guard import Guard
from sipline.net.wire import Wire
from sipline.sip.address import Address

US = Address("UDP", "127.0.0.1", 5060)
UAC = Address("UDP", "127.0.0.1", 5061)  # sipp as the caller, trusted
UAS = Address("UDP", "127.0.0.1", 5062)  # sipp as the fixed UAS


class _Nobody:
    """The registrar, location and directory: the relay scenario never reaches them."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the relay scenario should not use {name}")


class _Registrar:
    def on_register(self, *args: object) -> None:
        raise AssertionError("no REGISTER in the relay scenario")

    def on_tick(self, node: object, now: float) -> None:
        pass


def uac_invite(n: int) -> bytes:
    body = SDP.format(n=n)
    return (
        f"INVITE sip:uas@127.0.0.1:5062 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-1-0;rport\r\n"
        f"From: <sip:caller@127.0.0.1:5061>;tag={n}SIPpTag001\r\n"
        f"To: <sip:uas@127.0.0.1:5062>\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:5061;transport=UDP>\r\nMax-Forwards: 70\r\n"
        f"Subject: sipline bench\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def uac_in_dialog(n: int, method: str, cseq: int, to: str, routes: str, branch: int) -> bytes:
    return (
        f"{method} sip:uas@127.0.0.1:5062 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-{branch}-0;rport\r\n"
        f"Route: {routes}\r\n"
        f"From: <sip:caller@127.0.0.1:5061>;tag={n}SIPpTag001\r\nTo: {to}\r\n"
        f"Call-ID: {n}-1@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
        f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def uas_response(request: bytes, status: str, n: int, *, sdp: bool, rr: bool) -> bytes:
    """sipp's UAS answer: every Via and the Record-Route copied, its To tag added."""
    h = _lines(request)
    head = request.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]
    vias = "".join(f"{line}\r\n" for line in head if line.lower().startswith("via:"))
    record = "".join(f"{line}\r\n" for line in head if line.lower().startswith("record-route:"))
    to = h["to"] if ";tag=" in h["to"] else f"{h['to']};tag={n}SIPpTag012"
    body = SDP.format(n=n) if sdp else ""
    kind = "Content-Type: application/sdp\r\n" if sdp else ""
    return (
        f"SIP/2.0 {status}\r\n{vias}{record if rr else ''}From: {h['from']}\r\nTo: {to}\r\n"
        f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n"
        f"Contact: <sip:uas@127.0.0.1:5062;transport=UDP>\r\n{kind}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def relay_proxy(clock: Clock) -> tuple[Wire, Callable[[bytes, Address], None]]:
    """The proxy as ``bench compare --scenario relay`` runs it, on a Wire: the
    node and what a datagram goes through (the guard, then the node)."""
    settings = Settings(
        sip={"transports": ["udp"]},  # type: ignore[arg-type]
        proxy={"trusted": [f"{UAC.host}:{UAC.port}"], "media_relay": ""},  # type: ignore[arg-type]
        limits={"flood_density": 1_000_000_000},  # type: ignore[arg-type]
    )
    router = Router(settings, _Nobody(), _Nobody(), _Nobody(), monotonic=clock)
    handler = ProxyHandler(_Registrar(), router, settings.sip.server_header)
    wire = Wire(handler, clock, US)
    # Past 1560 cps the INVITEs' and BYEs' server transactions lingering 32 s
    # outnumber [sip] max_transactions' default (100,000): raised, as a bench
    # at such rates must raise it.
    wire.layer.max_transactions = 1_000_000
    # The bench's limits (bench.runner.SERVER_ENV): sipp's UAS shares the UAC's IP.
    admit = Guard(handler.trusts, settings.limits, clock=clock).admit

    def receive(data: bytes, source: Address) -> None:
        if admit(source):
            wire.receive(data, source)

    return wire, receive


def relay_call(wire: Wire, receive: Callable[[bytes, Address], None], n: int) -> float:
    """Call ``n`` of the relay scenario, from INVITE to the BYE's 200; returns
    the CPU seconds spent playing the peers (sipp), to leave out."""
    peers = 0.0
    p = time.process_time()
    invite = uac_invite(n)
    peers += time.process_time() - p
    receive(invite, UAC)
    b_invite = _one(wire.take(), UAS, b"INVITE")
    p = time.process_time()
    ok = uas_response(b_invite, "200 OK", n, sdp=True, rr=True)
    peers += time.process_time() - p
    receive(ok, UAS)
    a_ok = _one(wire.take(), UAC, b"SIP/2.0 200")
    p = time.process_time()
    h = _lines(a_ok)
    ack = uac_in_dialog(n, "ACK", 1, h["to"], h["record-route"], 2)
    bye = uac_in_dialog(n, "BYE", 2, h["to"], h["record-route"], 3)
    peers += time.process_time() - p
    receive(ack, UAC)
    _one(wire.take(), UAS, b"ACK")
    receive(bye, UAC)
    b_bye = _one(wire.take(), UAS, b"BYE")
    p = time.process_time()
    bye_ok = uas_response(b_bye, "200 OK", n, sdp=False, rr=False)
    peers += time.process_time() - p
    receive(bye_ok, UAS)
    _one(wire.take(), UAC, b"SIP/2.0 200")
    return peers


def run(calls: int, rate: float, profile: str | None = None) -> dict[str, float]:
    clock = Clock()
    wire, receive = relay_proxy(clock)
    total, peers = drive(clock, wire, lambda n: relay_call(wire, receive, n), calls, rate, profile)
    return figures(calls, total, peers, wire)


def main(argv: list[str]) -> int:
    return cli(argv, "python -m bench.proxy_profile", "proxy", run, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The flow token one proxy of a cluster gives another (proxy.cluster) on the wire,
against a real `sipline proxy` (127.0.0.2) trusting its peer proxy at 127.0.0.1:
only that peer, with our signature for the very call, makes it forward a new
request onto a phone's flow; a stranger with a stolen token is challenged, a
forged or borrowed signature is refused, and the phone hears nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.clusterstack import SECRET, ClusterNode, start, stop
from bench.proxystack import Phone, free_port, provision
from sipline.proxying.flows import HELD, encode_flow
from sipline.proxying.signing import Signer
from sipline.sip.address import Address
from sipline.sip.ids import new_branch

PEER, PROXY, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3"


@pytest.fixture
def proxy(sqlite_url: str, redis_url: str, tmp_path: Path) -> Iterator[ClusterNode]:
    asyncio.run(provision(sqlite_url, [Phone("alice", "alice-Secret1")]))
    port = free_port()
    started = start("proxy-2", PROXY, port, sqlite_url, redis_url,
                    [f"{PEER}:{port}", f"{PROXY}:{port}"], tmp_path)  # fmt: skip
    yield started
    stop([started])


def udp(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.settimeout(1.0)
    return sock


def invite(sender: socket.socket, proxy: ClusterNode, victim: socket.socket, call_id: str,
           params: str) -> bytes:  # fmt: skip
    host, port = sender.getsockname()
    route = f"<sip:{proxy.host}:{proxy.port};lr{params}>"
    return (
        f"INVITE sip:alice@127.0.0.1:{victim.getsockname()[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport\r\n"
        f"Route: {route}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:mallory@example.com>;tag=m1\r\nTo: <sip:alice@example.com>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:mallory@{host}:{port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def token(victim: socket.socket, call_id: str, secret: str = SECRET) -> str:
    flow = encode_flow(Address("UDP", "127.0.0.1", victim.getsockname()[1]))
    return Signer.from_secret(secret).sign(f";{HELD}={flow}", call_id)


def answer(sock: socket.socket) -> str:
    sock.settimeout(5.0)  # a loaded machine; silence is asked of the victim only
    while True:
        text = sock.recv(65535).decode()
        if not text.startswith("SIP/2.0 100 "):
            return text.split("\r\n", 1)[0]


def hears(victim: socket.socket) -> bool:
    try:
        victim.recv(65535)
    except TimeoutError:
        return False
    return True


def test_a_stranger_with_a_stolen_flow_token_is_challenged(proxy: ClusterNode) -> None:
    victim, stranger = udp("127.0.0.1"), udp(STRANGER)
    stranger.sendto(invite(stranger, proxy, victim, "c1", token(victim, "c1")),
                    (proxy.host, proxy.port))  # fmt: skip
    assert answer(stranger).startswith("SIP/2.0 407 ")
    assert not hears(victim)


@pytest.mark.parametrize(
    "forged",
    [lambda v: token(v, "another-call"), lambda v: token(v, "c2", "not-our-secret")],
    ids=["another-calls-signature", "another-key"],
)  # fmt: skip
def test_a_peer_address_with_a_token_not_signed_for_the_call_gets_nothing_through(
    proxy: ClusterNode, forged: object
) -> None:
    victim, peer = udp("127.0.0.1"), udp(PEER, proxy.port)
    params = forged(victim)  # type: ignore[operator]
    peer.sendto(invite(peer, proxy, victim, "c2", params), (proxy.host, proxy.port))
    assert answer(peer).startswith("SIP/2.0 403 ")  # a Route naming us, not signed by us
    assert not hears(victim)


def test_the_peer_proxy_with_our_signature_for_the_call_reaches_the_flow(
    proxy: ClusterNode,
) -> None:
    """The control: what the attacks above lack is what makes it work."""
    victim, peer = udp("127.0.0.1"), udp(PEER, proxy.port)
    peer.sendto(invite(peer, proxy, victim, "c3", token(victim, "c3")), (proxy.host, proxy.port))
    forwarded = victim.recv(65535).decode()
    assert forwarded.startswith("INVITE sip:alice@127.0.0.1:")
    assert f"{HELD}=" not in forwarded  # our Route is gone before the phone

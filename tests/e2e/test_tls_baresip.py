"""Two real softphones (baresip, its TLS transport and ``srtp`` module) register and
call each other over SIP over TLS with SDES-SRTP, through ``sipline proxy`` (TLS on
port + 1, anchoring every call) and ``sipline relay``, which ends each phone's
SRTP under keys of its own (ng ``transport-protocol`` RTP/SAVP).

While the call is up the relay shows both phones' audio flowing, each stream
latched to its phone: a packet only latches once it authenticates under the
phone's own key, so a latched stream with packets is SRTP both ways,
decrypted and encrypted again at the relay (the callee's first packets, sent
before its answer reached the relay, are dropped: its key was not known yet).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proxystack import (
    HOST,
    REPO,
    free_port,
    provision,
    proxy_command,
    proxy_env,
    wait_until_answering,
)
from sipline.net.testcerts import Authority
from tests.e2e.test_proxy_baresip import ALICE, BOB, Baresip
from tests.e2e.test_relay_baresip import AUDIO_SECONDS, calls_at, ng, rtp_streams
from tests.e2e.test_relay_baresip import relay as relay  # the fixture

pytestmark = pytest.mark.e2e


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path, "sipline-test-ca")


@pytest.fixture
def tls_proxy(
    tmp_path: Path, sqlite_url: str, relay: tuple[int, tuple[int, int]], authority: Authority
) -> Iterator[int]:
    """``sipline proxy`` on UDP and TLS (port + 1), anchoring every call at ``relay``."""
    asyncio.run(provision(sqlite_url, [ALICE, BOB]))
    cert = authority.issue("proxy", dns=["example.com"], ips=[HOST])
    port = free_port()
    extra = {
        "SIPLINE_SIP__TRANSPORTS": '["udp", "tls"]',
        "SIPLINE_TLS__CERTIFICATE": str(cert.certificate),
        "SIPLINE_TLS__KEY": str(cert.key),
        "SIPLINE_PROXY__MEDIA_RELAY": f"{HOST}:{relay[0]}",
        "SIPLINE_PROXY__ANCHOR_MEDIA": "always",
    }
    log = tmp_path / "proxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            proxy_command(), cwd=REPO, env=proxy_env(port, sqlite_url, extra),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        if not wait_until_answering(port, 20, process):
            pytest.fail(f"sipline proxy did not start:\n{log.read_text()}", pytrace=False)
        yield port + 1
    finally:
        process.kill()
        process.wait(5)


@pytest.fixture
def tls_phones(
    baresip_bin: str, tls_proxy: int, tmp_path: Path, authority: Authority
) -> Iterator[tuple[Baresip, Baresip]]:
    started: list[Baresip] = []
    config = f"module\tsrtp.so\nsip_cafile\t{authority.certificate}\n"
    try:
        for phone in (ALICE, BOB):
            started.append(
                Baresip(baresip_bin, phone, tls_proxy, tmp_path, "tls", config=config,
                        account=";mediaenc=srtp-mand")
            )  # fmt: skip
        yield started[0], started[1]
    finally:
        for process in started:
            process.stop()


def test_two_baresips_register_and_talk_over_tls_and_srtp_through_proxy_and_relay(
    tls_phones: tuple[Baresip, Baresip], relay: tuple[int, tuple[int, int]]
) -> None:
    alice, bob = tls_phones
    ng_port, _ = relay
    for phone in tls_phones:
        phone.wait_registered()

    assert alice.command("dial", f"sip:{BOB.aor}")["ok"] is True
    bob.wait_event("CALL_INCOMING")
    assert bob.command("accept")["ok"] is True
    for phone in tls_phones:
        phone.wait_event("CALL_ESTABLISHED")
    time.sleep(AUDIO_SECONDS)  # ausine's tone, both ways, SRTP on each side

    [call_id] = calls_at(ng_port)
    query = ng(ng_port, lambda client: client.query(call_id))
    streams = rtp_streams(query)
    assert len(streams) == 2
    for tag, stream in streams.items():
        assert "confirmed" in stream["flags"], (tag, stream)  # authenticated, latched
        assert stream["stats"]["packets"] >= 25, (tag, stream)
        # The callee's first packets may beat its answer (and so its key) to the relay.
        assert stream["stats"]["errors"] <= 5, (tag, stream)
    for party in query["tags"].values():
        assert party["medias"][0]["protocol"] == "RTP/SAVP"
    assert len({stream["endpoint"]["port"] for stream in streams.values()}) == 2

    assert alice.command("hangup")["ok"] is True
    for phone in tls_phones:
        phone.wait_event("CALL_CLOSED")  # the BYE went over TLS along our Record-Route
    for _ in range(50):
        if not calls_at(ng_port):
            break
        time.sleep(0.1)
    assert calls_at(ng_port) == []

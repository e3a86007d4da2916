"""A carrier reached over mutual TLS by a real ``sipline b2bua``.

The carrier is sipp (TCP) behind socat, which terminates TLS as a carrier's
SBC would: it presents the carrier's certificate (issued by the carrier's CA
for sbc.carrier.example) and asks for ours, verifying it against our CA. The
B2BUA knows the carrier as a ``[[tls.peers]]`` entry (its CA, its identity,
its address) and sends calls of a pattern route to ``;transport=tls``: the
call goes through only when both sides prove who they are. A carrier whose
certificate names another identity never gets the INVITE (the handshake
fails on our side), and the caller gets 408 after the failover timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proxystack import HOST
from sipline.net.ports import free_port
from sipline.net.testcerts import Authority, Issued
from tests.e2e.test_b2bua_sipp import (
    B2bua,
    Sipp,
    StartB2bua,
    caller,
    finish,
    run_sipp,
    sipps,  # noqa: F401 - the fixture
    start_b2bua,  # noqa: F401 - the fixture
    wait_for,
)

pytestmark = pytest.mark.e2e

IDENTITY = "sbc.carrier.example"


@pytest.fixture
def socat_bin() -> str:
    path = shutil.which("socat")
    if path is None:
        pytest.skip("socat is not installed (scripts/bootstrap.sh installs it)")
    return path


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Authority, Authority]:
    """Our CA and the carrier's."""
    return Authority.create(tmp_path, "our-ca"), Authority.create(tmp_path, "carrier-ca")


class Carrier:
    """socat terminating mutual TLS on ``port`` in front of a sipp UAS on TCP (``far``)."""

    def __init__(
        self, socat: str, cert: Issued, ours: Authority, port: int, sipp: str,
        running: list[Sipp], workdir: Path,
    ) -> None:  # fmt: skip
        self.port = port
        sipp_port = free_port()
        self.far = run_sipp(
            sipp, running, workdir, "b2bua_uas_tls.xml", sipp_port,
            "-t", "t1", "-aa", "-key", "gateway", str(port),
        )  # fmt: skip
        listen = (
            f"OPENSSL-LISTEN:{port},bind={HOST},reuseaddr,fork,cert={cert.certificate},"
            f"key={cert.key},cafile={ours.certificate},verify=1"
        )
        # A session of its own: its forked children go with it.
        self.process = subprocess.Popen(
            [socat, listen, f"TCP:{HOST}:{sipp_port}"], stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        time.sleep(0.3)  # both listening

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(5)


@pytest.fixture
def carriers() -> Iterator[list[Carrier]]:
    running: list[Carrier] = []
    yield running
    for carrier in running:
        if carrier.process.poll() is None:
            carrier.stop()


def b2bua_with_tls(start: StartB2bua, pki: tuple[Authority, Authority], gateway: int) -> B2bua:
    ours, theirs = pki
    cert = ours.issue("b2bua", dns=["b2bua.sipline.example"], ips=[HOST])
    acr = free_port()  # no ACR answers: the call takes the pattern route
    route = {"name": "carrier", "pattern": "^112$", "gateways": [f"{HOST}:{gateway};transport=tls"]}
    peer = {"name": "carrier", "identity": IDENTITY, "ca": str(theirs.certificate),
            "hosts": [f"{HOST}:{gateway}"]}  # fmt: skip
    tls = {
        "SIPLINE_SIP__TRANSPORTS": '["udp", "tls"]',
        "SIPLINE_TLS__CERTIFICATE": str(cert.certificate),
        "SIPLINE_TLS__KEY": str(cert.key),
        "SIPLINE_TLS__PEERS": json.dumps([peer]),
    }
    return start([acr], routes=[route], env=tls)


def test_a_carrier_is_reached_over_mutual_tls(
    start_b2bua: StartB2bua,  # noqa: F811
    sipps: list[Sipp],  # noqa: F811
    sipp_bin: str,
    socat_bin: str,
    pki: tuple[Authority, Authority],
    carriers: list[Carrier],
    tmp_path: Path,
) -> None:
    ours, theirs = pki
    gateway = free_port()
    cert = theirs.issue("carrier", dns=[IDENTITY])
    carrier = Carrier(socat_bin, cert, ours, gateway, sipp_bin, sipps, tmp_path)
    carriers.append(carrier)
    far = carrier.far
    b2bua = b2bua_with_tls(start_b2bua, pki, gateway)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-m", "1", number="112")
    finish(near, b2bua, "caller through the carrier over TLS")
    wait_for(lambda: far.received("BYE") == 1)
    assert far.received("INVITE") == 1
    invite = far.messages[far.messages.index("INVITE sip:") :]
    assert "Via: SIP/2.0/TLS" in invite  # the B leg speaks TLS to it


def test_a_carrier_with_another_identity_never_gets_the_call(
    start_b2bua: StartB2bua,  # noqa: F811
    sipps: list[Sipp],  # noqa: F811
    sipp_bin: str,
    socat_bin: str,
    pki: tuple[Authority, Authority],
    carriers: list[Carrier],
    tmp_path: Path,
) -> None:
    ours, theirs = pki
    gateway = free_port()
    impostor = theirs.issue("impostor", dns=["sbc.impostor.example"])
    carrier = Carrier(socat_bin, impostor, ours, gateway, sipp_bin, sipps, tmp_path)
    carriers.append(carrier)
    far = carrier.far
    b2bua = b2bua_with_tls(start_b2bua, pki, gateway)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_unreachable.xml", "-m", "1", number="112")
    finish(near, b2bua, "caller refused 503 at once")
    assert far.received("INVITE") == 0
    log = b2bua.log_text()
    assert "tcp_connect_failed" in log and "CERTIFICATE_VERIFY_FAILED" in log

"""sipp scenarios over TLS against a real ``sipline proxy`` (TLS on port + 1).

Debian's sipp (3.6.1, ``sip-tester``) is built without OpenSSL: ``-t l1`` says
"To use a TLS transport you must compile SIPp with OpenSSL". So sipp speaks
TCP (``-t t1``) to socat, which carries each connection over TLS to the proxy
and verifies its certificate: the proxy sees a TLS client, as it would a
phone. alice registers and calls over TLS; bob is registered over UDP and
answers there, so the call crosses TLS and UDP and the proxy record-routes
itself twice (RFC 5658): its TLS address for alice, its UDP one for bob.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench.proxystack import DOMAIN, HOST, free_port, users_csv
from sipline.net.testcerts import Authority
from tests.e2e.test_proxy_sipp import (
    ALICE,
    BOB,
    Proxy,
    StartProxy,
    callee,
    finish,
    register,
    sipp_args,
    start_proxy,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def socat_bin() -> str:
    path = shutil.which("socat")
    if path is None:
        pytest.skip("socat is not installed (scripts/bootstrap.sh installs it)")
    return path


@pytest.fixture
def tls_proxy(start_proxy: StartProxy, sqlite_url: str, tmp_path: Path) -> Proxy:  # noqa: F811
    authority = Authority.create(tmp_path, "test-ca")
    cert = authority.issue("proxy", dns=["example.com"], ips=[HOST])
    proxy = start_proxy(
        sqlite_url,
        SIPLINE_SIP__TRANSPORTS='["udp", "tls"]',
        SIPLINE_TLS__CERTIFICATE=str(cert.certificate),
        SIPLINE_TLS__KEY=str(cert.key),
    )
    proxy.workdir.joinpath("ca.pem").write_bytes(authority.certificate.read_bytes())
    return proxy


@pytest.fixture
def tunnel(socat_bin: str, tls_proxy: Proxy) -> Iterator[int]:
    """A TCP port whose connections socat carries over TLS to the proxy's TLS port,
    verifying its certificate against the test CA."""
    port = free_port()
    target = (
        f"OPENSSL:{HOST}:{tls_proxy.port + 1},cafile={tls_proxy.workdir / 'ca.pem'},"
        "verify=1,commonname=example.com"
    )
    # A session of its own: its forked children go with it.
    process = subprocess.Popen(
        [socat_bin, f"TCP-LISTEN:{port},bind={HOST},reuseaddr,fork", target],
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(0.3)
        assert process.poll() is None, "socat did not start"
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(5)


def over_tls(sipp: str, proxy: Proxy, tunnel: int, scenario: str, *args: str) -> None:
    port = free_port()
    command = sipp_args(sipp, replace(proxy, running=replace(proxy.running, port=tunnel)), scenario, port, "-t", "t1", *args)
    process = subprocess.Popen(command, cwd=proxy.workdir, stdout=subprocess.PIPE)
    finish(process, proxy, f"{scenario} over TLS")


def test_sipp_registers_and_calls_over_tls_to_a_phone_on_udp(
    sipp_bin: str, tls_proxy: Proxy, tunnel: int
) -> None:
    proxy = tls_proxy
    users = proxy.workdir / "alice.csv"
    users.write_text(users_csv([ALICE]))
    over_tls(
        sipp_bin, proxy, tunnel, "register.xml", "-inf", str(users), "-au", "[field0]",
        "-ap", "[field2]", "-auth_uri", DOMAIN, "-key", "expires", "3600", "-m", "1",
    )  # fmt: skip
    register(sipp_bin, proxy, [BOB])  # over UDP
    bob = callee(sipp_bin, proxy, "uas.xml")
    over_tls(
        sipp_bin, proxy, tunnel, "call_uac.xml", "-inf", str(users), "-au", "[field0]",
        "-ap", "[field2]", "-auth_uri", f"{BOB.user}@{BOB.domain}", "-s", BOB.user, "-m", "1",
        "-d", "300",
    )  # fmt: skip
    finish(bob, proxy, "bob (uas.xml over UDP)")
    messages = "\n".join(p.read_text(errors="replace") for p in proxy.workdir.glob("uas-*messages.log"))
    invite = messages[messages.index("INVITE sip:") :]
    head = re.split(r"\r?\n\r?\n", invite, maxsplit=1)[0]
    routes = re.findall(r"^Record-Route: (.*?)\r?$", head, re.M)
    tls_port, udp_port = proxy.port + 1, proxy.port
    assert len(routes) == 2, invite[:2000]
    assert routes[0].startswith(f"<sip:{HOST}:{udp_port};lr;")  # bob's side, first
    assert routes[1].startswith(f"<sip:{HOST}:{tls_port};transport=tls;lr;")  # alice's side
    assert "~s~" in routes[1]  # alice's flow is a TLS connection (fa)

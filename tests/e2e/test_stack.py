"""`sipline stack` (what `make run` starts): a demo phone's call to a PSTN number is answered.

The whole stack runs as real processes on free ports of 127.0.0.1 — relay,
proxy, B2BUA, both ACR nodes and the simulated carrier (sipp) — with a
SQLite database of its own. A sipp phone signs in as the demo subscriber
alice (407 challenge) and calls a PSTN number: proxy → B2BUA → ACR →
carrier answers; after the BYE the ACR's CDR names the demo carrier.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proxystack import REPO, Phone, free_port, users_csv, wait_until_answering

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ALICE = Phone("alice", "alice-demo-pw")
NUMBER = "15557654321"
START_TIMEOUT = 60.0


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str], proxy_port: int) -> None:
        self.workdir = workdir
        self.env = env
        self.proxy_port = proxy_port
        self.log = workdir / "stack.log"
        self.process: subprocess.Popen[bytes] | None = None

    def sipline(self, *words: str) -> str:
        command = [sys.executable, "-m", "sipline.cli", "--config", str(REPO / "configs/single.toml")]
        done = subprocess.run(
            [*command, *words], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def stack(tmp_path: Path, sipp_bin: str) -> Iterator[Stack]:
    ports = {name: free_port() for name in ("proxy", "b2bua", "primary", "secondary", "carrier")}
    ng, stun = free_port(), free_port()
    rtp = free_port()
    peers = [f"127.0.0.1:{ports[n]}" for n in ("b2bua", "primary", "secondary")]
    env = {
        **os.environ,
        "SIPLINE_DATABASE__URL": f"sqlite:///{tmp_path}/sipline.db",
        "SIPLINE_NODE__DATA_DIR": str(tmp_path),
        "SIPLINE_SIP__PORT": str(ports["proxy"]),
        "SIPLINE_SIP__TRANSPORTS": '["udp"]',
        "SIPLINE_PROXY__TRUSTED": json.dumps(peers),
        "SIPLINE_PROXY__B2BUA": json.dumps(peers[:1]),
        "SIPLINE_PROXY__MEDIA_RELAY": f"127.0.0.1:{ng}",
        "SIPLINE_B2BUA__PORT": str(ports["b2bua"]),
        # As configs/single.toml: each role trusts the one before it by address and port.
        "SIPLINE_B2BUA__TRUSTED": json.dumps([f"127.0.0.1:{ports['proxy']}"]),
        "SIPLINE_ACR__TRUSTED": json.dumps(peers[:1]),
        "SIPLINE_B2BUA__ACR": json.dumps(peers[1:]),
        "SIPLINE_B2BUA__MEDIA_RELAY": f"127.0.0.1:{ng}",
        "SIPLINE_ACR__PRIMARY": peers[1],
        "SIPLINE_ACR__SECONDARY": peers[2],
        "SIPLINE_RELAY__NG_PORT": str(ng),
        "SIPLINE_RELAY__STUN_PORT": str(stun),
        "SIPLINE_RELAY__STUN_TRANSPORTS": '["udp"]',
        "SIPLINE_RELAY__RTP_PORT_MIN": str(rtp - rtp % 2 + 2),
        "SIPLINE_RELAY__RTP_PORT_MAX": str(rtp - rtp % 2 + 41),
    }
    stack = Stack(tmp_path, env, ports["proxy"])
    command = [
        sys.executable, "-m", "sipline.cli", "--config", str(REPO / "configs/single.toml"),
        "stack", "--carrier-port", str(ports["carrier"]),
    ]  # fmt: skip
    with stack.log.open("wb") as log:
        stack.process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=log)
    try:
        if not wait_until_answering(ports["proxy"], START_TIMEOUT, stack.process):
            pytest.fail(f"the stack did not start\n{stack.log_text()[-5000:]}", pytrace=False)
        deadline = time.monotonic() + START_TIMEOUT
        while stack.log_text().count("event=acr_started") < 2 or "b2bua_started" not in stack.log_text():
            if time.monotonic() > deadline or stack.process.poll() is not None:
                pytest.fail(f"roles did not start\n{stack.log_text()[-5000:]}", pytrace=False)
            time.sleep(0.2)
        yield stack
    finally:
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(30)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()


def test_a_demo_phone_calls_a_pstn_number_through_every_role(stack: Stack, sipp_bin: str) -> None:
    port = free_port()
    users = stack.workdir / "alice.csv"
    users.write_text(users_csv([ALICE]))
    command = [
        sipp_bin, f"127.0.0.1:{stack.proxy_port}", "-sf", str(SCENARIOS / "call_uac.xml"),
        "-i", "127.0.0.1", "-p", str(port), "-timeout", "30s", "-nostdin",
        "-inf", str(users), "-au", "[field0]", "-ap", "[field2]",
        "-auth_uri", f"{NUMBER}@example.com", "-s", NUMBER, "-m", "1", "-d", "300",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=stack.workdir, capture_output=True, timeout=60)
    assert done.returncode == 0, (
        f"sipp exited {done.returncode}\n{done.stdout[-2000:].decode(errors='replace')}\n"
        f"--- stack log ---\n{stack.log_text()[-6000:]}"
    )
    deadline = time.monotonic() + 10
    while not (cdrs := json.loads(stack.sipline("cdr", "list", "--json"))):
        assert time.monotonic() < deadline, f"no CDR\n{stack.log_text()[-4000:]}"
        time.sleep(0.3)
    (cdr,) = cdrs
    assert (cdr["carrier"], cdr["callee"], cdr["final_code"]) == ("demo-carrier", NUMBER, 200)

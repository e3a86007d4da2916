"""`sipline stack` (what `make run` starts): a demo phone's call to a PSTN number is answered.

The whole stack runs as real processes on free ports of 127.0.0.1 — relay,
proxy, B2BUA, both ACR nodes and the simulated carrier (sipp) — with a
SQLite database of its own. A sipp phone signs in as the demo subscriber
alice (407 challenge) and calls a PSTN number: proxy → B2BUA → ACR →
carrier answers; after the BYE the ACR's CDR names the demo carrier.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proxystack import Phone, free_port, users_csv
from tests.e2e.stacks import Stack, running_stack

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ALICE = Phone("alice", "alice-demo-pw")
NUMBER = "15557654321"


@pytest.fixture
def stack(tmp_path: Path, sipp_bin: str) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


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

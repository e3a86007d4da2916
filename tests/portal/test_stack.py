"""The portal in `sipline stack` (what `make run` starts): the demo operator logs in,
the status wall shows every node, and a call placed by a sipp phone through the
stack appears in the portal's CDRs with its carrier and cost."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.proxystack import Phone, free_port, users_csv
from sipline.stack import DEMO_OPERATOR
from tests.e2e.stacks import Stack, running_stack

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parents[1] / "e2e" / "scenarios"
ALICE = Phone("alice", "alice-demo-pw")
NUMBER = "15557654321"
WAIT = 30.0


@pytest.fixture
def stack(tmp_path: Path, sipp_bin: str) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


def portal_client(stack: Stack) -> httpx.Client:
    base = f"http://127.0.0.1:{stack.ports['portal']}"
    client = httpx.Client(base_url=base, timeout=10)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            token = client.get("/api/csrf").json()["csrf"]
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, stack.log_text()[-4000:]
            time.sleep(0.2)
    user, password = DEMO_OPERATOR
    answer = client.post("/api/login", json={"username": user, "password": password},
                         headers={"X-CSRF-Token": token})  # fmt: skip
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json()["csrf"]
    return client


def sipp_caller(stack: Stack, sipp_bin: str, scenario: str, *extra: str) -> list[str]:
    """sipp as the demo subscriber alice calling NUMBER through the stack's proxy."""
    users = stack.workdir / "alice.csv"
    users.write_text(users_csv([ALICE]))
    return [
        sipp_bin, f"127.0.0.1:{stack.proxy_port}", "-sf", str(SCENARIOS / scenario),
        "-i", "127.0.0.1", "-p", str(free_port()), "-timeout", "60s", "-nostdin",
        "-inf", str(users), "-au", "[field0]", "-ap", "[field2]",
        "-auth_uri", f"{NUMBER}@example.com", "-s", NUMBER, "-m", "1", *extra,
    ]  # fmt: skip


def place_call(stack: Stack, sipp_bin: str, hold_ms: int = 300) -> None:
    command = sipp_caller(stack, sipp_bin, "call_uac.xml", "-d", str(hold_ms))
    done = subprocess.run(command, cwd=stack.workdir, capture_output=True, timeout=90)
    assert done.returncode == 0, (
        f"sipp exited {done.returncode}\n{done.stdout[-2000:].decode(errors='replace')}\n"
        f"--- stack log ---\n{stack.log_text()[-6000:]}"
    )


def test_the_stack_serves_the_portal_with_status_and_cdrs(stack: Stack, sipp_bin: str) -> None:
    assert f"portal http://127.0.0.1:{stack.ports['portal']}/" in stack.log_text()
    client = portal_client(stack)
    deadline = time.monotonic() + WAIT
    while {n["role"] for n in client.get("/api/status").json()} < {"proxy", "b2bua", "acr"}:
        assert time.monotonic() < deadline, client.get("/api/status").text
        time.sleep(0.3)
    place_call(stack, sipp_bin)
    deadline = time.monotonic() + WAIT
    while not (found := client.get("/api/cdrs", params={"callee": NUMBER}).json()["cdrs"]):
        assert time.monotonic() < deadline, stack.log_text()[-4000:]
        time.sleep(0.3)
    (cdr,) = found
    assert (cdr["carrier"], cdr["final_code"]) == ("demo-carrier", 200)
    assert cdr["cost"] > 0 and cdr["billed_seconds"] == 60  # 1 s of talk on a 60/60 deck
    page = client.get("/cdrs", params={"callee": NUMBER})
    assert "demo-carrier" in page.text


def test_a_live_call_is_shown_with_its_cost_and_an_operator_hangs_it_up(
    stack: Stack, sipp_bin: str
) -> None:
    client = portal_client(stack)
    command = sipp_caller(stack, sipp_bin, "call_uac_callee_bye.xml")
    sipp = subprocess.Popen(command, cwd=stack.workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        while not (live := client.get("/api/calls").json()["calls"]):
            assert sipp.poll() is None and time.monotonic() < deadline, stack.log_text()[-4000:]
            time.sleep(0.3)
        (call,) = live
        assert (call["callee"], call["carrier"]) == (NUMBER, "demo-carrier")
        assert "alice" in call["caller"] and call["cost"] == 0.01  # 60/60 at 0.01 a minute
        billing = client.get("/api/billing").json()["accounts"]
        assert [(r["live_calls"], r["today_total"]) for r in billing] == [(1, 0.01)]
        page = client.get("/calls")
        assert call["call_id"] in page.text and "Hang up" in page.text
        ended = client.post(f"/api/calls/{call['call_id']}/hangup")
        assert ended.status_code == 200, ended.text
        assert sipp.wait(WAIT) == 0  # the caller got the BYE and answered it
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait()
    deadline = time.monotonic() + WAIT
    while not (found := client.get("/api/cdrs", params={"callee": NUMBER}).json()["cdrs"]):
        assert time.monotonic() < deadline, stack.log_text()[-4000:]
        time.sleep(0.3)
    assert found[0]["call_id"] == call["call_id"] and found[0]["cost"] == 0.01
    deadline = time.monotonic() + WAIT  # live views are shared for portal.live_interval
    while client.get("/api/calls").json()["calls"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert client.get("/api/audit").json()[0]["action"] == "call_hangup"
    again = client.post(f"/api/calls/{call['call_id']}/hangup")
    assert again.status_code == 404

"""The nodes of `sipline stack` seen and driven by an operator, without Redis (the
embedded default: each node's admin endpoint) and with a private Redis (heartbeats
and pub/sub): `sipline status` lists every role running; `sipline carrier list`
shows its gateway's real state; a subscriber added with the CLI reaches every
node within 2 s and is registered at once; `sipline node drain` makes the proxy
answer REGISTER 503 with Retry-After while a call it holds goes on, then shows it
`stopped by admin` until `resume`; a node killed with SIGKILL is shown failed.

The stack is started once per mode; the tests run in order against it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.proxystack import Phone, free_port, users_csv
from sipline import __version__
from tests.e2e.stacks import CONFIG, REPO, Stack, running_stack

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ALICE = Phone("alice", "alice-demo-pw")
BOB = Phone("bob", "bob-demo-pw")
NUMBER = "15557654321"  # the demo carrier answers every number
ROLES = ["acr", "acr", "b2bua", "proxy", "relay"]
PUSH_LIMIT = 2.0  # seconds for a change to reach every node (issue 13)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sipp_bin: str
) -> Iterator[Stack]:
    redis_url = None
    if request.param == "redis":
        redis_url = f"{request.getfixturevalue('redis_server')}/63"
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()
    with running_stack(tmp_path_factory.mktemp(request.param), redis_url) as running:
        running.redis_url = redis_url  # type: ignore[attr-defined]
        yield running


def until(condition: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def proxy_name(stack: Stack) -> str:
    return f"proxy@127.0.0.1:{stack.proxy_port}"


def test_status_lists_every_role_running_with_its_version(stack: Stack) -> None:
    def all_running() -> dict[str, dict[str, Any]] | None:
        nodes = stack.status()
        running = [n for n in nodes.values() if n["state"] == "running"]
        return nodes if len(running) == len(ROLES) else None

    nodes = until(all_running, 20)
    assert nodes, stack.sipline("status")
    assert sorted(n["role"] for n in nodes.values()) == ROLES
    assert {n["version"] for n in nodes.values()} == {__version__}
    assert proxy_name(stack) in nodes
    table = stack.sipline("status")
    assert table.splitlines()[0].split()[:6] == ["ROLE", "NAME", "ADDRESS", "VERSION", "UPTIME",
                                                  "STATE"]  # fmt: skip
    assert table.count(" running ") == len(ROLES)


def test_carrier_list_shows_the_real_state_of_the_gateway(stack: Stack) -> None:
    carrier = f"127.0.0.1:{stack.ports['carrier']}/udp"

    def status_of_gateway() -> str:
        for line in stack.sipline("carrier", "list").splitlines():
            if carrier in line:
                return line.split()[-1]
        return ""

    assert until(lambda: status_of_gateway() == "up", 15), stack.sipline("carrier", "list")
    assert "no live data" not in stack.sipline("carrier", "list")


def test_a_subscriber_added_reaches_every_node_within_two_seconds(
    stack: Stack, sipp_bin: str
) -> None:
    before = {name: n["config_version"] for name, n in stack.status().items()}
    added = stack.run("subscriber", "add", "carol@example.com", "--password-stdin",
                      stdin="carol-pw\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    started = time.monotonic()
    if getattr(stack, "redis_url", None):
        assert "published to 5 node(s)" in added.stderr, added.stderr
    else:
        assert "applied by 5 of 5 node(s)" in added.stderr, added.stderr

    def moved() -> bool:
        return all(n["config_version"] > before[name] for name, n in stack.status().items())

    assert until(moved, PUSH_LIMIT, every=0.02), stack.sipline("status")
    assert time.monotonic() - started < PUSH_LIMIT + 1.5  # a status command takes its time too
    port = register(stack, sipp_bin, Phone("carol", "carol-pw"))
    [binding] = json.loads(stack.sipline("registrations", "carol@example.com", "--json"))
    assert (binding["contact"], binding["received"], binding["transport"], binding["node"]) == (
        f"sip:carol@127.0.0.1:{port};transport=UDP", f"127.0.0.1:{port}", "UDP",
        proxy_name(stack),
    )  # fmt: skip
    assert binding["user_agent"] == "sipp" and 3500 < binding["expires_in"] <= 3600
    listing = stack.sipline("registrations").splitlines()
    assert listing[0].split() == ["AOR", "CONTACT", "RECEIVED", "TRANSPORT", "NODE", "EXPIRES",
                                  "USER-AGENT"]  # fmt: skip
    assert any(line.startswith("carol@example.com ") for line in listing)


def test_drain_refuses_new_work_with_503_until_resumed_and_waits_for_what_it_holds(
    stack: Stack, sipp_bin: str
) -> None:
    name = proxy_name(stack)
    bob_port = register(stack, sipp_bin, BOB)
    bob = sipp(stack, sipp_bin, "uas_ring.xml", bob_port, "-s", "bob", "-m", "1")
    alice = call(stack, sipp_bin, "call_uac_cancel.xml", BOB, ALICE, pause_ms=4000)
    try:
        assert until(lambda: "SIP/2.0 180" in messages(stack, "call_uac_cancel.xml"), 10)
        drained = stack.run("node", "drain", name)
        assert drained.returncode == 0, drained.stderr
        assert drained.stdout.strip() == f"{name}: draining"  # the ringing call is held
        answer = raw_register(stack.proxy_port)
        assert answer.startswith(b"SIP/2.0 503 "), answer
        assert b"\r\nRetry-After: 60\r\n" in answer
        assert stack.status()[name]["state"] == "draining"
        finish(alice, "alice (cancelled while ringing)")
        finish(bob, "bob (ringing)")
        assert until(lambda: stack.status()[name]["state"] == "stopped by admin", 5)
        assert raw_register(stack.proxy_port).startswith(b"SIP/2.0 503 ")
    finally:
        for process in (alice, bob):
            if process.poll() is None:
                process.kill()
        resumed = stack.run("node", "resume", name)
    assert resumed.returncode == 0 and resumed.stdout.strip() == f"{name}: running"
    assert raw_register(stack.proxy_port).startswith(b"SIP/2.0 401 ")  # challenged again
    assert stack.status()[name]["state"] == "running"


def test_a_dead_gateway_is_down_in_carrier_list_and_not_first_in_acr_explain(
    stack: Stack,
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nobody answers there
    stack.sipline("carrier", "add", "dead", "--gateway", dead)
    deck = stack.workdir / "dead.csv"
    deck.write_text("prefix,rate\n1,0.001\n")  # far cheaper than the demo carrier
    stack.sipline("rates", "import", str(deck), "--carrier", "dead", "--quiet")

    def gateway(address: str) -> str:
        lines = stack.sipline("carrier", "list").splitlines()
        return next((line.split()[-1] for line in lines if address in line), "")

    assert until(lambda: gateway(dead) == "down", 15), stack.sipline("carrier", "list")
    assert gateway(f"127.0.0.1:{stack.ports['carrier']}") == "up"
    explained = json.loads(stack.sipline("acr", "explain", "+15557654321", "--json"))
    assert explained["source"].startswith("live, from")
    assert explained["candidates"][0]["carrier"] == "demo-carrier", explained
    text = stack.sipline("acr", "explain", "15557654321")
    assert text.splitlines()[0].startswith("(live, from")


def test_account_list_shows_the_calls_up_and_the_b2bua_at_capacity_after_a_403(
    stack: Stack, sipp_bin: str
) -> None:
    stack.sipline("account", "set", "ACME", "--licence", "1", "--grace-hours", "0")
    added = stack.run("subscriber", "add", "dave@example.com", "--account", "ACME",
                      "--password-stdin", stdin="dave-pw\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    dave, number = Phone("dave", "dave-pw"), Phone(NUMBER, "")
    held = call(stack, sipp_bin, "call_uac.xml", number, dave, pause_ms=8000)
    try:
        assert until(lambda: "SIP/2.0 200" in messages(stack, "call_uac.xml"), 15)
        assert calls_of(stack, "ACME") == "1"
        refused = call(stack, sipp_bin, "call_uac_refused.xml", number, dave, pause_ms=0)
        finish(refused, "dave's second call (403 Licence Exceeded)")
        assert calls_of(stack, "ACME") == "1"  # what is up, right after the 403
        b2bua = next(n for n in stack.status().values() if n["role"] == "b2bua")
        assert (b2bua["state"], b2bua["detail"]) == ("at capacity", "licence limits reached")
        finish(held, "dave's held call")
    finally:
        if held.poll() is None:
            held.kill()
    assert until(lambda: calls_of(stack, "ACME") == "0", 5)


def calls_of(stack: Stack, account: str) -> str:
    """The CALLS column of ``account`` in `sipline account list`."""
    for line in stack.sipline("account", "list").splitlines():
        if line.startswith(account + " "):
            return line.split()[-1]
    return ""


def test_a_node_killed_with_sigkill_is_shown_failed(stack: Stack) -> None:
    ng = free_port()
    env = {**stack.env, "SIPLINE_RELAY__NG_PORT": str(ng), "SIPLINE_RELAY__STUN_TRANSPORTS": "[]",
           "SIPLINE_METRICS__PORT": "0"}  # fmt: skip
    command = [sys.executable, "-m", "sipline.cli", "--config", CONFIG, "relay"]
    extra = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    name = f"relay@127.0.0.1:{ng}"
    try:
        assert until(lambda: stack.status().get(name, {}).get("state") == "running", 15)
        os.kill(extra.pid, signal.SIGKILL)
        extra.wait(5)
        killed = time.monotonic()
        redis_url = getattr(stack, "redis_url", None)
        if redis_url:  # its heartbeat key, read straight from Redis: no command's start-up
            with redis.Redis.from_url(redis_url) as client:
                assert until(lambda: not client.exists(f"sipline:node:{name}"), 6, 0.02)
            took = time.monotonic() - killed
            assert 2.0 < took < 4.0, took  # 3 s after its last beat, one a second
        failed = until(lambda: stack.status()[name]["state"] == "stopped by failure", 6, 0.2)
        if not redis_url:  # unreachable at once
            assert time.monotonic() - killed < 5.0
    finally:
        if extra.poll() is None:
            extra.kill()
    shown = stack.status()[name]
    assert failed, shown
    assert (shown["sessions"], shown["version"]) == (None, "")  # no stale figures
    others = [n for n in stack.status().values() if n["name"] != name]
    # (the B2BUA may still be at capacity from the account test)
    assert {n["state"] for n in others} <= {"running", "at capacity"}
    stack.sipline("node", "forget", name)
    assert name not in stack.status()


# -- phones -----------------------------------------------------------------------------
def sipp(stack: Stack, sipp_bin: str, scenario: str, port: int, *args: str) -> subprocess.Popen:
    command = [
        sipp_bin, f"127.0.0.1:{stack.proxy_port}", "-sf", str(SCENARIOS / scenario),
        "-i", "127.0.0.1", "-p", str(port), "-timeout", "30s", "-nostdin",
        "-trace_msg", "-message_file", str(stack.workdir / f"{Path(scenario).stem}-{port}.log"),
        *args,
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=stack.workdir, stdout=subprocess.PIPE)


def finish(process: subprocess.Popen, what: str) -> None:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, f"{what}: sipp {process.returncode}\n{out[-2000:]!r}"


def register(stack: Stack, sipp_bin: str, phone: Phone) -> int:
    port = free_port()
    users = stack.workdir / f"{phone.user}.csv"
    users.write_text(users_csv([phone]))
    process = sipp(stack, sipp_bin, "register.xml", port, "-inf", str(users), "-au", "[field0]",
                   "-ap", "[field2]", "-auth_uri", phone.domain, "-key", "expires", "3600",
                   "-m", "1")  # fmt: skip
    finish(process, f"registering {phone.user}")
    return port


def call(
    stack: Stack, sipp_bin: str, scenario: str, to: Phone, caller: Phone, pause_ms: int
) -> subprocess.Popen:
    users = stack.workdir / f"caller-{caller.user}.csv"
    users.write_text(users_csv([caller]))
    process = sipp(stack, sipp_bin, scenario, free_port(), "-inf", str(users), "-au", "[field0]",
                   "-ap", "[field2]", "-auth_uri", f"{to.user}@{to.domain}", "-s", to.user,
                   "-m", "1", "-d", str(pause_ms))  # fmt: skip
    return process


def messages(stack: Stack, scenario: str) -> str:
    """What sipp traced of ``scenario`` so far (-trace_msg)."""
    files = stack.workdir.glob(f"{Path(scenario).stem}-*.log")
    return "".join(p.read_text(errors="replace") for p in files)


def raw_register(port: int) -> bytes:
    """An unauthenticated REGISTER for alice from a socket of its own: the first answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        me = sock.getsockname()[1]
        branch = f"z9hG4bKdrain{time.monotonic_ns()}"
        sock.settimeout(3)
        sock.sendto(
            (
                f"REGISTER sip:example.com SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch={branch};rport\r\n"
                f"From: <sip:alice@example.com>;tag={branch}\r\nTo: <sip:alice@example.com>\r\n"
                f"Call-ID: {branch}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
                f"Contact: <sip:alice@127.0.0.1:{me}>\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        while True:
            data = sock.recv(65535)
            if not data.startswith(b"SIP/2.0 100 "):
                return data


def test_status_json_is_one_array(stack: Stack) -> None:
    data = json.loads(stack.sipline("status", "--json"))
    assert isinstance(data, list) and {"name", "role", "state", "config_version"} <= set(data[0])

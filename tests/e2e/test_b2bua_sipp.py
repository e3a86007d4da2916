"""`sipline b2bua` as a real process between sipp callers (the proxy's side) and sipp
callees standing in for the ACR nodes and a pattern route's gateway.

Each test starts the B2BUA on a free port of 127.0.0.1 with its ACR pair and
gateways on free ports, short probe intervals and a short failover timeout.
Callees run with -aa, which answers the B2BUA's OPTIONS probes with 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.proxystack import HOST, REPO, SIPLINE, Phone, answers_options, provision
from bench.sippstats import read_response_times
from sipline.net.ports import free_port
from sipline.storage import Subscribers, open_database
from sipline.storage.accounts import Accounts

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP_TIMEOUT = 30  # seconds: sipp's -timeout; the process is killed 30 s later
PROBE_INTERVAL = 0.2
FAILOVER_TIMEOUT = 0.5


@dataclass
class B2bua:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    workdir: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


StartB2bua = Callable[..., B2bua]


@pytest.fixture
def start_b2bua(tmp_path: Path) -> Iterator[StartB2bua]:
    started: list[B2bua] = []

    def start(
        acr: list[int],
        routes: list[dict[str, object]] = (),  # type: ignore[assignment]
        database: str | None = None,
        env: dict[str, str] | None = None,
        **settings: object,
    ) -> B2bua:
        """``settings`` are [b2bua] keys; ``env`` other SIPLINE_* variables."""
        port = free_port()
        workdir = tmp_path / f"b2bua-{len(started)}"
        workdir.mkdir()
        values: dict[str, object] = {
            "port": port,
            "acr": [f"{HOST}:{p}" for p in acr],
            "routes": list(routes),
            "probe_interval": PROBE_INTERVAL,
            "probe_failures": 2,
            "probe_successes": 2,
            "failover_timeout": FAILOVER_TIMEOUT,
            "media_relay": "",
            "trusted": [HOST],  # sipp plays the proxies, from ports of its own
            **settings,
        }
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
        env = {
            **clean,
            "SIPLINE_LOG__LEVEL": "info",
            "SIPLINE_NODE__DRAIN_TIMEOUT": "1",
            "SIPLINE_DATABASE__URL": database or f"sqlite:///{workdir / 'b2bua.db'}",
            **{f"SIPLINE_B2BUA__{k.upper()}": v if isinstance(v, str) else json.dumps(v)
               for k, v in values.items()},
            **(env or {}),
        }  # fmt: skip
        log = workdir / "b2bua.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(SIPLINE), "b2bua", "--config", "configs/single.toml"], cwd=REPO, env=env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        b2bua = B2bua(process, port, log, workdir)
        started.append(b2bua)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            answer = answers_options(port, timeout=0.2)
            if answer is not None and answer.startswith(b"SIP/2.0 200 "):
                return b2bua
            time.sleep(0.1)
        pytest.fail(f"sipline b2bua did not start:\n{b2bua.log_text()}", pytrace=False)

    yield start
    for b2bua in started:
        if b2bua.process.poll() is None:
            b2bua.process.send_signal(signal.SIGTERM)
            try:
                b2bua.process.wait(10)
            except subprocess.TimeoutExpired:
                b2bua.process.kill()
                b2bua.process.wait(5)


@dataclass
class Sipp:
    process: subprocess.Popen[bytes]
    name: str
    workdir: Path

    @property
    def messages(self) -> str:
        path = self.workdir / f"{self.name}-messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def received(self, method: str) -> int:
        """How many distinct ``method`` requests it received (retransmissions not counted)."""
        return len(self.requests(method))

    def requests(self, method: str) -> set[tuple[str, str]]:
        """(Call-ID, CSeq) of the ``method`` requests in its message log that it received."""
        found = set()
        for block in self.messages.split("message received")[1:]:
            text = block.split(":", 1)[1].lstrip()
            if not text.startswith(f"{method} "):
                continue
            headers = dict(
                line.split(":", 1)
                for line in text.split("\n\n", 1)[0].splitlines()[1:]
                if ":" in line
            )
            found.add((headers.get("Call-ID", "").strip(), headers.get("CSeq", "").strip()))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)  # sipp: quit after the calls in progress
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def sipps(tmp_path: Path) -> Iterator[list[Sipp]]:
    running: list[Sipp] = []
    yield running
    for sipp in running:
        if sipp.process.poll() is None:
            sipp.process.kill()
            sipp.process.wait(5)


def run_sipp(
    sipp_bin: str, running: list[Sipp], workdir: Path, scenario: str, port: int,
    *args: str, remote: int | None = None,
) -> Sipp:  # fmt: skip
    name = f"{Path(scenario).stem}-{port}-{len(running)}"
    command = [
        sipp_bin, *([f"{HOST}:{remote}"] if remote else []), "-sf", str(SCENARIOS / scenario),
        "-i", HOST, "-p", str(port), "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin",
        "-trace_err", "-error_file", str(workdir / f"{name}-errors.log"),
        "-trace_msg", "-message_file", str(workdir / f"{name}-messages.log"),
        *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    sipp = Sipp(process, name, workdir)
    running.append(sipp)
    return sipp


def callee(
    sipp_bin: str, running: list[Sipp], b2bua: B2bua | Path, scenario: str, port: int, *args: str
) -> Sipp:
    """A sipp UAS on ``port``, once it answers OPTIONS (-aa), until stopped: every
    OPTIONS counts as one of its calls, so -m cannot bound it. Given a directory
    instead of a B2BUA, it runs before the B2BUA starts: the B2BUA's probes find
    it up from the first (a test that counts calls per node needs no hop marked
    down because its sipp was slow to start on a loaded machine)."""
    workdir = b2bua if isinstance(b2bua, Path) else b2bua.workdir
    sipp = run_sipp(sipp_bin, running, workdir, scenario, port, "-aa", *args)
    wait_for(lambda: (answers_options(port, timeout=0.1) or b"").startswith(b"SIP/2.0 200 "))
    return sipp


def caller(
    sipp_bin: str, running: list[Sipp], b2bua: B2bua, scenario: str, *args: str,
    number: str = "+15551230000",
) -> Sipp:  # fmt: skip
    return run_sipp(
        sipp_bin,
        running,
        b2bua.workdir,
        scenario,
        free_port(),
        "-s",
        number,
        *args,
        remote=b2bua.port,
    )


def finish(sipp: Sipp, b2bua: B2bua, what: str) -> None:
    """Wait for a sipp run; fail with its output and the B2BUA's log unless it exited 0."""
    try:
        out, _ = sipp.process.communicate(timeout=SIPP_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        sipp.process.kill()
        out, _ = sipp.process.communicate()
    if sipp.process.returncode != 0:
        errors = sipp.workdir / f"{sipp.name}-errors.log"
        pytest.fail(
            f"{what}: sipp exited {sipp.process.returncode}\n{out[-2000:].decode(errors='replace')}\n"
            f"--- errors ---\n{errors.read_text(errors='replace')[-2000:] if errors.exists() else ''}\n"
            f"--- b2bua log ---\n{b2bua.log_text()[-4000:]}",
            pytrace=False,
        )


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# -- calls ---------------------------------------------------------------------------------------
def test_a_call_crosses_as_a_new_call_with_nothing_of_the_caller_s_topology(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr, free_port()])
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-m", "1", "-d", "200")
    finish(near, b2bua, "caller")
    wait_for(lambda: far.received("BYE") == 1)
    far.stop()
    invite = far.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    sent = near.messages.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    caller_call_id = next(line for line in sent.splitlines() if line.startswith("Call-ID:"))
    assert caller_call_id not in invite
    assert "proxy=hidden" not in invite  # the caller's Record-Route
    assert f":{near.name.split('-')[-2]}" not in invite  # the caller's port: Via, Contact
    assert "P-Asserted-Identity: <sip:caller@example.com>" in invite  # toward the ACR: kept
    assert "X-Sipline-Deadline: " in invite  # when we give up on it (wall clock)
    assert "Session-Expires: 1800" in invite and "timer" in invite
    assert far.received("BYE") == 1
    answered = near.messages.split("SIP/2.0 200 OK", 1)[1].split("\n\n", 1)[0]
    assert "proxy=hidden" in answered  # our answer carries the caller's Record-Route back
    assert f"{HOST}:{acr}" not in answered  # and nothing of the far side's


def test_a_reinvite_from_the_caller_crosses_and_bye_ends_both_legs(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr])
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_reinvite.xml", "-m", "1", "-d", "200")
    finish(near, b2bua, "caller")
    wait_for(lambda: far.received("BYE") == 1)
    far.stop()
    assert far.received("INVITE") == 2
    assert far.received("ACK") == 2


def test_the_far_side_s_reinvite_and_bye_reach_the_caller(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr])
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas_bye.xml", acr, "-d", "300")
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_callee_bye.xml", "-m", "1")
    finish(near, b2bua, "caller")
    far.stop()
    assert near.received("INVITE") == 1 and near.received("BYE") == 1


def test_a_cancel_while_it_rings_cancels_the_far_side(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr])
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas_ring.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_cancel.xml", "-m", "1")
    finish(near, b2bua, "caller")
    far.stop()


def test_a_call_longer_than_the_limit_is_ended_on_both_legs(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr], max_call_duration=1.0)
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_callee_bye.xml", "-m", "1")
    finish(near, b2bua, "caller")  # got a BYE
    wait_for(lambda: far.received("BYE") == 1)
    far.stop()


# -- RFC 3261 on the A and B legs ----------------------------------------------------------------
def responses(sipp: Sipp, status: int, cseq: str) -> list[str]:
    """The ``status`` responses for ``cseq`` in its message log that it received,
    retransmissions included, each as its start line and headers."""
    found = []
    for block in sipp.messages.split("message received")[1:]:
        text = block.split(":", 1)[1].lstrip()
        head = text.split("\n\n", 1)[0]
        if text.startswith(f"SIP/2.0 {status} ") and f"CSeq: {cseq}" in head:
            found.append(head)
    return found


@pytest.mark.parametrize(
    ("transport", "scenario"),
    [("u1", "b2bua_uac_late_ack.xml"), ("t1", "b2bua_uac_late_ack_tcp.xml")],
    ids=["udp", "tcp"],
)
def test_our_200_goes_to_the_caller_again_until_its_ack(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str, transport: str, scenario: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr])
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, scenario, "-t", transport, "-m", "1", "-d", "2500")
    finish(near, b2bua, "caller")  # over TCP a 200 after its ACK would have failed the call
    wait_for(lambda: far.received("BYE") == 1)
    far.stop()
    # RFC 3261 §13.3.1.4: at 0, 0.5 and 1.5 s before the ACK; none after it (3.5 s would be next).
    assert len(responses(near, 200, "1 INVITE")) == 3


def test_a_call_whose_far_side_goes_silent_after_ringing_is_ended_by_timer_c(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr], timer_c=1.0)
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas_ring.xml", acr)  # 180, then nothing
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_timer_c.xml", "-m", "1")
    finish(near, b2bua, "caller")  # 180, then 408
    wait_for(lambda: far.received("CANCEL") == 1)
    far.stop()
    (timeout,) = responses(near, 408, "1 INVITE")
    assert "far side went silent" in timeout
    assert "event=timer_c" in b2bua.log_text()


def test_a_302_reaches_the_caller_with_its_contacts(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr])
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas_redirect.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_redirected.xml", "-m", "1")
    finish(near, b2bua, "caller")
    far.stop()
    (moved,) = set(responses(near, 302, "1 INVITE"))
    contacts = [line for line in moved.splitlines() if line.lower().startswith("contact:")]
    assert contacts == [
        f"Contact: <sip:+15559990000@{HOST}:{acr}>;q=0.9, <sip:+15559990001@{HOST}:{acr}>;q=0.5"
    ]
    assert far.received("INVITE") == 1


def test_a_302_is_followed_on_the_b_leg_when_configured(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr], follow_redirects=1)
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas_redirect_follow.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-m", "1", "-d", "200")
    finish(near, b2bua, "caller")  # answered: the 302 never reached it
    wait_for(lambda: far.received("BYE") == 1)
    far.stop()
    assert responses(near, 302, "1 INVITE") == []
    assert f"INVITE sip:+15559990000@{HOST}:{acr} SIP/2.0" in far.messages  # the higher q


# -- next hops -------------------------------------------------------------------------------------
def test_a_503_from_one_acr_node_sends_the_call_to_the_other(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    first, second = free_port(), free_port()
    b2bua = start_b2bua([first, second])
    refusing = callee(sipp_bin, sipps, b2bua, "b2bua_uas_unavailable.xml", first)
    taking = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", second)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-m", "4", "-r", "10", "-d", "100")
    finish(near, b2bua, "caller")
    wait_for(lambda: taking.received("BYE") == 4)
    refusing.stop()
    taking.stop()
    assert taking.received("BYE") == 4
    # Its 503 marks it down at once (RFC 3261 §21.5.4): the next calls skip it until
    # two probes (0.2 s apart) have their 200, so of 4 calls in 0.3 s it sees 1 or 2;
    # one more when, on a loaded machine, a call hunts on from a slow taking node.
    assert refusing.received("INVITE") in (1, 2, 3)
    assert "event=next_hop_down" in b2bua.log_text() and "why=503" in b2bua.log_text()


def test_a_late_200_from_a_node_given_up_on_is_acked_and_byed_as_a_ghost(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str, tmp_path: Path
) -> None:
    slow, other = free_port(), free_port()
    # Both up before the B2BUA probes them: the first call goes to the first node,
    # never to the other because the slow one's sipp was late to start.
    late = callee(sipp_bin, sipps, tmp_path, "b2bua_uas_late.xml", slow)  # 200 after 3 s
    taking = callee(sipp_bin, sipps, tmp_path, "b2bua_uas.xml", other)
    b2bua = start_b2bua([slow, other])
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-m", "1", "-d", "1500")
    wait_for(lambda: late.received("BYE") == 1)  # sent by the B2BUA, not the caller
    finish(near, b2bua, "caller")  # its call went through the other node
    wait_for(lambda: taking.received("BYE") == 1)
    late.stop()
    taking.stop()
    bye = late.messages.split("BYE sip:", 1)[1].split("\n\n", 1)[0]
    assert 'Reason: SIP;cause=200;text="ghost"' in bye
    assert late.received("ACK") == 1 and late.received("INVITE") == 1
    assert "event=ghost_hung_up" in b2bua.log_text()


def test_a_number_matching_a_pattern_route_goes_to_its_gateway_without_internal_headers(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    acr, gateway = free_port(), free_port()
    routes = [{"name": "emergency", "pattern": "^(112|911)$", "gateways": [f"{HOST}:{gateway}"]}]
    b2bua = start_b2bua([acr], routes=routes)
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", gateway)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-m", "1", number="112")
    finish(near, b2bua, "caller")
    far.stop()
    assert "P-Asserted-Identity" not in far.messages


def test_calls_go_on_through_the_secondary_while_the_primary_is_down_and_round_robin_resumes(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str, tmp_path: Path
) -> None:
    """A carrier engineer's view: while the primary is down every call goes through
    the secondary within the failover timeout; once it answers probes again round
    robin resumes, and it gets only new calls, never an INVITE given up on while
    it was down. How many calls each node takes while both are up is round robin's
    (alternating) only while neither is marked down, which a loaded machine may do
    for a moment (a sipp silent for silence_timeout): counted as at least one each."""
    primary, secondary = free_port(), free_port()
    first = callee(sipp_bin, sipps, tmp_path, "b2bua_uas.xml", primary)
    second = callee(sipp_bin, sipps, tmp_path, "b2bua_uas.xml", secondary)
    b2bua = start_b2bua([primary, secondary])
    calls = ("-r", "10", "-d", "50", "-m")
    finish(caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", *calls, "6"), b2bua, "both up")
    wait_for(lambda: first.received("BYE") + second.received("BYE") == 6)
    first.stop()  # the primary goes away: no caller sees a failure
    both_up = (first.received("INVITE"), second.received("INVITE"))
    assert sum(both_up) == 6 and min(both_up) >= 1, both_up

    down = caller(
        sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-trace_rtt", "-rtt_freq", "1", *calls, "10"
    )
    finish(down, b2bua, "primary down")
    assert f"event=next_hop_down hop={HOST}:{primary}" in b2bua.log_text()
    (rtt,) = down.workdir.glob("b2bua_uac_*_rtt.csv")
    setup_ms = read_response_times(rtt.read_text())
    assert len(setup_ms) == 10 and max(setup_ms) < (FAILOVER_TIMEOUT + 0.5) * 1000
    wait_for(lambda: second.received("BYE") == both_up[1] + 10)  # every call while it was down

    again = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", primary)
    # Up again by its own probes (an earlier next_hop_up of another hop would not do).
    wait_for(lambda: f"event=next_hop_up hop={HOST}:{primary}" in b2bua.log_text())
    finish(caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", *calls, "6"), b2bua, "primary back")
    wait_for(lambda: again.received("BYE") + second.received("BYE") == both_up[1] + 10 + 6)
    second.stop()
    again.stop()
    assert second.received("INVITE") == second.received("BYE")
    # Round robin over both again, and the INVITEs sent to the primary while it was
    # down were given up on and sent no more: every INVITE it gets now is a call
    # that went through (its BYE came), none a ghost the B2BUA had to hang up.
    assert 1 <= again.received("INVITE") == again.received("BYE") <= 5
    assert "Reason: SIP;cause=200" not in again.messages
    assert "event=ghost_hung_up" not in b2bua.log_text()


def test_a_dead_acr_node_is_skipped_after_one_silent_call_and_back_at_once_without_ghosts(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str
) -> None:
    primary, secondary = free_port(), free_port()
    # Probes every 30 s: only the calls themselves can tell the primary died.
    b2bua = start_b2bua([primary, secondary], probe_interval=30.0, probe_down_interval=0.2)
    first = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", primary)
    second = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", secondary)
    calls = ("-r", "10", "-d", "50", "-m")
    finish(caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", *calls, "4"), b2bua, "both up")
    wait_for(lambda: first.received("BYE") == 2)
    first.stop()

    down = caller(
        sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-trace_rtt", "-rtt_freq", "1", *calls, "20"
    )
    finish(down, b2bua, "primary down")  # no caller sees a failure
    (rtt,) = down.workdir.glob("b2bua_uac_*_rtt.csv")
    setup_ms = read_response_times(rtt.read_text())
    assert len(setup_ms) == 20
    # The calls sent to it before it had been silent for silence_timeout (0.4 s) wait
    # the failover timeout: at 10 calls/s, 1 to 3 of them; round robin would send it 10.
    waited = [ms for ms in setup_ms if ms >= FAILOVER_TIMEOUT * 1000 * 0.8]
    assert 1 <= len(waited) <= 3, setup_ms
    assert 'why="no answer to an INVITE"' in b2bua.log_text() or "why=silent" in b2bua.log_text()

    again = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", primary)
    wait_for(lambda: "event=next_hop_up" in b2bua.log_text(), timeout=5.0)  # probed every 0.2 s
    finish(caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", *calls, "6"), b2bua, "primary back")
    wait_for(lambda: again.received("BYE") == 3)
    again.stop()
    second.stop()
    # The INVITEs it was sent while dead were sent no more once failed over: back,
    # it gets the round robin's 3 and nothing else to route (0 ghost calls).
    assert again.received("INVITE") == 3


# -- licences ---------------------------------------------------------------------------------------
def test_a_caller_over_its_account_s_licence_after_the_grace_period_gets_403(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'accounts.db'}"

    async def provision_account() -> None:
        await provision(url, [Phone("caller", "secret-1", "example.com")])
        db = await open_database(url)
        try:
            await Subscribers(db).remove("caller@example.com")
            await Subscribers(db).add("caller@example.com", "secret-1", account="acme")
            await Accounts(db).set("acme", 0, grace_hours=0)
        finally:
            await db.close()

    asyncio.run(provision_account())
    acr = free_port()
    b2bua = start_b2bua([acr], database=url)
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac_refused.xml", "-m", "1")
    finish(near, b2bua, "caller")
    far.stop()
    assert "403 Licence Exceeded" in near.messages
    assert far.received("INVITE") == 0


# -- media ------------------------------------------------------------------------------------------
def media_port(message: str) -> str:
    return message.split("m=audio ", 1)[1].split(" ", 1)[0]


def test_anchored_media_goes_through_real_rtpengine_on_both_legs(
    start_b2bua: StartB2bua, sipps: list[Sipp], sipp_bin: str, rtpengine: int
) -> None:
    acr = free_port()
    b2bua = start_b2bua([acr], media_relay=f"{HOST}:{rtpengine}", anchor_media="always")
    far = callee(sipp_bin, sipps, b2bua, "b2bua_uas.xml", acr)
    near = caller(sipp_bin, sipps, b2bua, "b2bua_uac.xml", "-m", "1", "-d", "200")
    finish(near, b2bua, "caller")
    wait_for(lambda: far.received("BYE") == 1)
    far.stop()
    offered = near.messages.split("INVITE sip:", 1)[1]
    relayed = far.messages.split("INVITE sip:", 1)[1]
    assert media_port(relayed) != media_port(offered)  # the relay's port, not the caller's
    assert int(media_port(relayed)) >= 20_000  # rtpengine's range (sipp's own are 6000 up)
    answered = far.messages.split("SIP/2.0 200 OK", 1)[1]
    received = near.messages.split("SIP/2.0 200 OK", 1)[1]
    assert media_port(received) != media_port(answered)
    assert "media_failed" not in b2bua.log_text()

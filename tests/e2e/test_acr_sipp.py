"""`sipline acr` as a real process between a sipp UAC (the B2BUA's side) and
sipp UAS "carriers", with carriers and decks stored in MariaDB (or SQLite).

Carriers: "cheap" refuses every call with 503, "slow" rings only after 3 s
(past the PDD limit of 1 s), "good" answers; decks at 0.01, 0.02 and 0.05
per minute. Probes run every 0.3 s, 2 failures mark a gateway down, 2
successes up again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from acr.billing import billed_seconds, call_cost
from acr.health import gateway_statuses
from bench.acrstack import HOST, SippCarrier, acr_command, acr_env, provision
from bench.proxystack import answers_options
from sipline.carriers.model import Cdr, RoutingProfile
from sipline.carriers.store import AcrStore
from sipline.net.ports import free_port
from sipline.storage import open_database

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# Carriers' behaviours (answering, refusing, slow) are shared with the bench and `sipline stack`.
CARRIERS = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
NUMBER = "442071234567"
SIPP_TIMEOUT = 30  # seconds: sipp's -timeout
SETTINGS = {
    "SIPLINE_ACR__PDD_TIMEOUT": "1",
    "SIPLINE_ACR__PROBE_INTERVAL": "0.3",
    "SIPLINE_ACR__PROBE_FAILURES": "2",
    "SIPLINE_ACR__PROBE_SUCCESSES": "2",
    "SIPLINE_ACR__EXPLORATION": "0",
    "SIPLINE_ACR__CDR_BATCH_MS": "50",
    # A restarted node must check the Record-Route it signed before (sipline.proxying.signing).
    "SIPLINE_AUTH__SECRET": "test-acr-routing-secret",
    "SIPLINE_ACR__TRUSTED": '["127.0.0.1"]',  # sipp plays the B2BUA, from ports of its own
}


def cheap() -> SippCarrier:
    return SippCarrier("cheap", 0.01, CARRIERS / "acr_carrier_503.xml")


def slow() -> SippCarrier:
    return SippCarrier("slow", 0.02, CARRIERS / "acr_carrier_slow.xml")


def good(name: str = "good", rate: float = 0.05) -> SippCarrier:
    return SippCarrier(name, rate, CARRIERS / "acr_carrier.xml", connect_fee=0.01)


@dataclass
class AcrProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(15)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    sipp: str
    workdir: Path
    url: str
    carriers: list[SippCarrier]
    nodes: list[AcrProcess]

    def start_acr(
        self,
        node: str = "primary",
        redis_url: str | None = None,
        port: int | None = None,
        **settings: str,
    ) -> AcrProcess:
        """``sipline acr --node NODE`` on ``port`` (a free one by default), with SETTINGS
        and ``settings`` (environment names, ``SIPLINE_ACR__TRUSTED="..."``) over the
        config; its journal in the test's own data dir (the same for a restart)."""
        port = port or free_port(HOST)
        log = self.workdir / f"acr-{node}.log"
        env = acr_env(
            f"{HOST}:{port}", self.url, redis_url, {**SETTINGS, **settings}, node=node,
            data_dir=self.workdir / "data",
        )  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                acr_command(node), cwd=Path(__file__).resolve().parents[2], env=env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        acr = AcrProcess(process, port, log)
        self.nodes.append(acr)
        assert until(lambda: _answers(port), 20, process), f"no ACR:\n{acr.log_text()}"
        return acr

    def call(self, acr: AcrProcess, calls: int = 1, number: str = NUMBER, hold: int = 1000) -> int:
        """sipp UAC placing ``calls`` calls of ``hold`` ms, one after the other; its exit code."""
        done = subprocess.run(
            [self.sipp, f"{HOST}:{acr.port}", "-sf", str(SCENARIOS / "acr_uac.xml"),
             "-s", number, "-i", HOST, "-p", str(free_port(HOST)), "-m", str(calls),
             "-r", "5", "-l", "1", "-d", str(hold), "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin",
             "-trace_err", "-error_file", str(self.workdir / "uac-errors.log")],
            cwd=self.workdir, capture_output=True, timeout=SIPP_TIMEOUT + 30,
        )  # fmt: skip
        return done.returncode

    def cdrs(self) -> list[Cdr]:
        return asyncio.run(_cdrs(self.url))


async def _cdrs(url: str) -> list[Cdr]:
    db = await open_database(url)
    try:
        return await AcrStore(db).cdrs(100)
    finally:
        await db.close()


def _answers(port: int) -> bool:
    answer = answers_options(port, timeout=0.2)
    return answer is not None and answer.startswith(b"SIP/2.0 200 ")


def until(
    check: Callable[[], bool], timeout: float, process: subprocess.Popen | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def stack(sipp_bin: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(url: str, carriers: list[SippCarrier], profiles=()) -> Stack:
        asyncio.run(provision(url, carriers, profiles))
        for carrier in carriers:
            carrier.start(sipp_bin, tmp_path / "carriers")
        stack = Stack(sipp_bin, tmp_path, url, carriers, [])
        made.append(stack)
        return stack

    yield make
    for stack in made:
        for acr in stack.nodes:
            if acr.process.poll() is None:
                acr.process.kill()
                acr.process.wait()
        for carrier in stack.carriers:
            carrier.stop()


def statuses(redis_url: str, carriers: list[SippCarrier]) -> dict[str, str]:
    found = asyncio.run(gateway_statuses(redis_url, [c.address for c in carriers]))
    return {c.name: found[c.address] for c in carriers}


# -- routing, failover, CDRs ----------------------------------------------------------------
def test_calls_fail_over_past_the_503_and_the_slow_carrier_and_are_billed_in_mariadb(
    stack: Callable[..., Stack], mysql_url: str
) -> None:
    s = stack(mysql_url, [cheap(), slow(), good()])
    acr = s.start_acr()
    assert s.call(acr, calls=3) == 0, (s.workdir / "uac-errors.log").read_text(errors="replace")
    assert acr.stop() == 0
    cdrs = s.cdrs()
    assert len(cdrs) == 3, acr.log_text()
    for cdr in cdrs:
        assert (cdr.carrier, cdr.final_code, cdr.account, cdr.callee) == (
            "good",
            200,
            "acme",
            NUMBER,
        )
        assert cdr.gateway == s.carriers[2].address and cdr.prefix == "44" and cdr.node == "primary"
        assert cdr.answer is not None and 0.9 < cdr.end - cdr.answer < 3
        billed = billed_seconds(cdr.end - cdr.answer, 6, 6)
        assert cdr.billed_seconds == billed == 6
        assert cdr.cost == call_cost(billed, 0.05, 0.01) == pytest.approx(0.015)


def test_the_cheapest_healthy_carrier_takes_the_calls(
    stack: Callable[..., Stack], sqlite_url: str
) -> None:
    s = stack(sqlite_url, [good("dear", 0.09), good("cheapest", 0.01), good("middle", 0.03)])
    acr = s.start_acr()
    assert s.call(acr, calls=2) == 0
    acr.stop()
    assert [c.carrier for c in s.cdrs()] == ["cheapest", "cheapest"]


def test_an_acr_killed_with_calls_up_bills_them_when_their_byes_reach_it_restarted(
    stack: Callable[..., Stack], sqlite_url: str
) -> None:
    s = stack(sqlite_url, [good()])
    acr = s.start_acr()
    calls, hold = 6, 5000
    uac = subprocess.Popen(
        [s.sipp, f"{HOST}:{acr.port}", "-sf", str(SCENARIOS / "acr_uac.xml"), "-s", NUMBER,
         "-i", HOST, "-p", str(free_port(HOST)), "-m", str(calls), "-r", "10", "-l", str(calls),
         "-d", str(hold), "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin",
         "-trace_err", "-error_file", str(s.workdir / "uac-errors.log")],
        cwd=s.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(2.5)  # every call answered (and ACKed), none hung up yet
        acr.process.kill()  # SIGKILL: no drain, nothing written on the way out
        acr.process.wait(5)
        restarted = s.start_acr(port=acr.port)  # its BYEs come here (sipp retransmits them)
        assert uac.wait(SIPP_TIMEOUT + 30) == 0, (s.workdir / "uac-errors.log").read_text()
    finally:
        if uac.poll() is None:
            uac.kill()
    assert restarted.stop() == 0
    cdrs = s.cdrs()
    assert len(cdrs) == calls, restarted.log_text()
    for cdr in cdrs:
        assert cdr.final_code == 200 and cdr.answer is not None and cdr.node == "primary"
        assert hold / 1000 - 0.5 < cdr.end - cdr.answer < hold / 1000 + 3
        assert cdr.billed_seconds == billed_seconds(cdr.end - cdr.answer, 6, 6)


# -- probes -----------------------------------------------------------------------------------
def test_a_killed_carrier_is_marked_down_by_its_probes_and_back_up_when_it_returns(
    stack: Callable[..., Stack], sqlite_url: str, redis_url: str
) -> None:
    s = stack(sqlite_url, [good("only", 0.02)])
    carrier = s.carriers[0]
    acr = s.start_acr(redis_url=redis_url)
    assert until(lambda: statuses(redis_url, s.carriers)["only"] == "up", 10), acr.log_text()
    carrier.stop()
    assert until(lambda: statuses(redis_url, s.carriers)["only"] == "down", 10), acr.log_text()
    assert s.call(acr) != 0  # nobody to take it: 480
    carrier.start(s.sipp, s.workdir / "carriers")
    assert until(lambda: statuses(redis_url, s.carriers)["only"] == "up", 10), acr.log_text()
    assert s.call(acr) == 0
    acr.stop()


# -- two nodes, one Redis -----------------------------------------------------------------------
def test_statistics_written_by_one_node_are_used_by_the_other(
    stack: Callable[..., Stack], sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    # "flaky" is the cheaper but fails every call with 500 (no back-off: only the
    # statistics can tell); quality weighs most for these numbers.
    flaky = SippCarrier("flaky", 0.01, CARRIERS / "acr_carrier_500.xml")
    profile = RoutingProfile("44", 0.1, 0.8, 0.1)
    s = stack(sqlite_url, [flaky, good("steady", 0.02)], [profile])
    primary = s.start_acr("primary", redis_url)
    secondary = s.start_acr("secondary", redis_url)
    assert s.call(primary, calls=10, hold=100) == 0  # each fails over from flaky to steady
    time.sleep(2.5)  # both sync every second
    explained = subprocess.run(
        [*acr_command()[:2], "explain", NUMBER, "--json", "--config", "configs/single.toml"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, timeout=30,
        env=acr_env("127.0.0.1:5080", sqlite_url, redis_url),
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr.decode(errors="replace")
    data = json.loads(explained.stdout)
    text = json.dumps(data)
    assert s.call(secondary, calls=3, hold=100) == 0
    primary.stop()
    secondary.stop()
    by_secondary = [c for c in s.cdrs() if c.node == "secondary"]
    assert [c.carrier for c in by_secondary] == ["steady"] * 3
    # What any node sees through Redis: flaky's failures, steady ranked first.
    ranked = [c["carrier"] for c in data["candidates"]]
    assert ranked == ["steady", "flaky"], text
    # At least the first call's attempt; how many more before the next re-ranking
    # (every second) put it behind depends on the machine's pace.
    assert data["candidates"][1]["figures"]["attempts"] >= 1

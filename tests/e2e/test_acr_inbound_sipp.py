"""Inbound calls through `sipline acr`: a sipp UAC as a carrier's gateway calls one
of our DIDs, sipp UAS as the DID's home proxy and its backup.

The gateway is provisioned as the only gateway of carrier "pstn"; the UAC sends
from exactly that address and port (``-p``), which is how the ACR tells an
inbound call from an outbound one. Each UAS answers OPTIONS probes (0.3 s
apart, 2 failures mark down, 2 successes up). The UAC logs which proxy answered
(its Contact's address).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from acr.health import gateway_statuses
from bench.acrstack import HOST, SippCarrier, provision
from sipline.carriers.model import Did
from sipline.net.ports import free_port
from tests.e2e.test_acr_sipp import CARRIERS, SCENARIOS, SIPP_TIMEOUT, AcrProcess, Stack, until

pytestmark = pytest.mark.e2e

DID = "442079460000"


def proxy(name: str, scenario: str = "acr_carrier.xml") -> SippCarrier:
    """A sipp UAS at a DID's proxy (carrier's scenarios: they answer probes the same way)."""
    return SippCarrier(name, 0.0, CARRIERS / scenario)


@dataclass
class Inbound:
    stack: Stack
    gateway: SippCarrier  # provisioned only: the sipp UAC sends from its port
    home: SippCarrier
    backup: SippCarrier
    calls: list[int] = field(default_factory=list)

    def start_acr(self, redis_url: str | None = None, **settings: str) -> AcrProcess:
        return self.stack.start_acr("primary", redis_url, **settings)

    def call(self, acr: AcrProcess, port: int | None = None) -> tuple[int, list[str]]:
        """One call to the DID from the gateway's port (or ``port``): sipp's exit
        code and, per answered call, the HOST:PORT of the proxy that answered."""
        workdir = self.stack.workdir
        number = len(self.calls)
        self.calls.append(number)
        logs = workdir / f"uac-{number}-logs.log"
        done = subprocess.run(
            [self.stack.sipp, f"{HOST}:{acr.port}", "-sf", str(SCENARIOS / "acr_inbound_uac.xml"),
             "-s", DID, "-i", HOST, "-p", str(port or self.gateway.port), "-m", "1",
             "-d", "200", "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin",
             "-trace_logs", "-log_file", str(logs),
             "-trace_err", "-error_file", str(workdir / f"uac-{number}-errors.log")],
            cwd=workdir, capture_output=True, timeout=SIPP_TIMEOUT + 30,
        )  # fmt: skip
        text = logs.read_text(errors="replace") if logs.exists() else ""
        answered = [line.split()[-1] for line in text.splitlines() if "answered_by" in line]
        return done.returncode, answered

    def refused(self, acr: AcrProcess, port: int) -> int:
        """A call from ``port`` that expects 403: sipp's exit code."""
        done = subprocess.run(
            [self.stack.sipp, f"{HOST}:{acr.port}", "-sf",
             str(SCENARIOS / "acr_inbound_refused.xml"), "-s", DID, "-i", HOST,
             "-p", str(port), "-m", "1", "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin"],
            cwd=self.stack.workdir, capture_output=True, timeout=SIPP_TIMEOUT + 30,
        )  # fmt: skip
        return done.returncode

    def status(self, redis_url: str, address: str) -> str:
        return asyncio.run(gateway_statuses(redis_url, [address]))[address]


@pytest.fixture
def inbound(sipp_bin: str, tmp_path: Path, sqlite_url: str) -> Iterator[Callable[..., Inbound]]:
    made: list[Inbound] = []

    def make(home: SippCarrier, backup: SippCarrier | None = None) -> Inbound:
        backup = backup or proxy("backup")
        gateway = SippCarrier("pstn", 0.01, CARRIERS / "acr_carrier.xml")
        did = Did(DID, home.address, (backup.address,))
        asyncio.run(provision(sqlite_url, [gateway], dids=[did]))
        for uas in (home, backup):
            uas.start(sipp_bin, tmp_path / "proxies")
        stack = Stack(sipp_bin, tmp_path, sqlite_url, [home, backup], [])
        made.append(Inbound(stack, gateway, home, backup))
        return made[-1]

    yield make
    for one in made:
        for acr in one.stack.nodes:
            if acr.process.poll() is None:
                acr.process.kill()
                acr.process.wait()
        for uas in one.stack.carriers:
            uas.stop()


def test_a_carriers_call_to_a_did_is_answered_by_its_home_proxy(
    inbound: Callable[..., Inbound],
) -> None:
    i = inbound(proxy("home"))
    acr = i.start_acr()
    code, answered = i.call(acr)
    assert code == 0, acr.log_text()
    assert answered == [i.home.address]
    assert acr.stop() == 0


def test_a_stopped_home_proxy_is_marked_down_by_its_probes_and_calls_go_to_the_backup_at_once(
    inbound: Callable[..., Inbound], redis_url: str
) -> None:
    i = inbound(proxy("home"))
    # A PDD limit far longer than the call takes: the backup is tried first,
    # not after waiting for the home proxy that is down.
    acr = i.start_acr(redis_url, SIPLINE_ACR__PDD_TIMEOUT="10")
    assert until(lambda: i.status(redis_url, i.home.address) == "up", 10), acr.log_text()
    i.home.stop()
    assert until(lambda: i.status(redis_url, i.home.address) == "down", 10), acr.log_text()
    started = time.monotonic()
    code, answered = i.call(acr)
    assert code == 0, acr.log_text()
    assert answered == [i.backup.address]
    assert time.monotonic() - started < 5
    # Back up: its probes bring it back, and its calls with it.
    i.home.start(i.stack.sipp, i.stack.workdir / "proxies")
    assert until(lambda: i.status(redis_url, i.home.address) == "up", 10), acr.log_text()
    assert i.call(acr) == (0, [i.home.address])
    assert acr.stop() == 0


def test_a_home_proxy_refusing_with_503_hands_the_call_to_the_backup(
    inbound: Callable[..., Inbound],
) -> None:
    i = inbound(proxy("home", "acr_carrier_503.xml"))
    acr = i.start_acr()
    code, answered = i.call(acr)
    assert code == 0, acr.log_text()
    assert answered == [i.backup.address]
    assert acr.stop() == 0


def test_a_silent_home_proxy_hands_the_call_to_the_backup_at_the_pdd_limit(
    inbound: Callable[..., Inbound],
) -> None:
    i = inbound(proxy("home", "acr_inbound_silent.xml"))
    acr = i.start_acr()  # PDD limit 1 s
    code, answered = i.call(acr)
    assert code == 0, acr.log_text()
    assert answered == [i.backup.address]
    assert acr.stop() == 0


def test_a_call_from_neither_a_gateway_nor_a_trusted_peer_gets_403(
    inbound: Callable[..., Inbound],
) -> None:
    i = inbound(proxy("home"))
    acr = i.start_acr(SIPLINE_ACR__TRUSTED='["127.0.0.2"]')  # not us: we are a stranger
    assert i.refused(acr, free_port(HOST)) == 0, acr.log_text()
    # The gateway is known by its address and port whoever is trusted.
    assert i.call(acr) == (0, [i.home.address])
    assert acr.stop() == 0

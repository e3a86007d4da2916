"""Inbound DID calls with real proxies: a carrier's gateway (sipp) calls a DID
through a real `sipline acr`; the DID's home proxy (127.0.0.1) and its backup
(127.0.0.2) are real `sipline proxy` processes sharing the location. While the
home proxy lives the call reaches the phone through it; SIGKILLed, the ACR's
probes mark it down, the phone registers with the backup, and the next DID
call is answered through the backup."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from bench.acrstack import SippCarrier, acr_command, acr_env
from bench.acrstack import provision as provision_acr
from bench.clusterstack import listening, start, stop
from bench.proxystack import REPO, Phone, free_port, provision
from sipline.carriers.model import Did
from tests.cluster.handset import Handset
from tests.e2e.test_acr_sipp import CARRIERS, SCENARIOS, SETTINGS, SIPP_TIMEOUT

DID = "442079460000"
SUBSCRIBER = Phone("+" + DID, "did-Secret1")  # the phone the DID rings: a subscriber named by it


def did_call(sipp: str, acr_port: int, gateway: SippCarrier, workdir: Path, n: int) -> list[str]:
    """One call from the gateway's port to the DID; the HOST:PORT that answered it."""
    logs = workdir / f"uac-{n}.log"
    done = subprocess.run(
        [sipp, f"127.0.0.1:{acr_port}", "-sf", str(SCENARIOS / "acr_inbound_uac.xml"),
         "-s", DID, "-i", "127.0.0.1", "-p", str(gateway.port), "-m", "1", "-d", "200",
         "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin", "-trace_logs", "-log_file", str(logs)],
        cwd=workdir, capture_output=True, timeout=SIPP_TIMEOUT + 30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:].decode(errors="replace")
    text = logs.read_text(errors="replace")
    return [line.split()[-1] for line in text.splitlines() if "answered_by" in line]


async def test_did_calls_reach_the_phone_through_the_backup_proxy_when_the_home_one_dies(
    mysql_url: str, redis_url: str, sipp_bin: str, tmp_path: Path
) -> None:
    gateway = SippCarrier("pstn", 0.01, CARRIERS / "acr_carrier.xml")
    port, acr_port = free_port(), free_port()
    home, backup = f"127.0.0.1:{port}", f"127.0.0.2:{port}"
    await provision(mysql_url, [SUBSCRIBER])
    await provision_acr(mysql_url, [gateway], dids=[Did(DID, home, (backup,))])
    peers = [home, backup, f"127.0.0.1:{acr_port}"]
    proxies = [start(f"proxy-{n}", host, port, mysql_url, redis_url, peers, tmp_path)
               for n, host in ((1, "127.0.0.1"), (2, "127.0.0.2"))]  # fmt: skip
    settings = {**SETTINGS, "SIPLINE_ACR__TRUSTED": '["127.0.0.1", "127.0.0.2"]'}
    log = tmp_path / "acr.log"
    with log.open("wb") as out:
        acr = subprocess.Popen(
            acr_command(), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env=acr_env(f"127.0.0.1:{acr_port}", mysql_url, redis_url, settings),
        )  # fmt: skip
    phone = None
    try:
        assert listening("127.0.0.1", acr_port, 20, acr), log.read_text()
        phone = await Handset.open(SUBSCRIBER.user, SUBSCRIBER.password, "127.0.0.1", port)
        assert await phone.register() == 200
        answered = await asyncio.to_thread(did_call, sipp_bin, acr_port, gateway, tmp_path, 1)
        assert answered == [f"127.0.0.1:{phone.local[1]}"], log.read_text()[-3000:]

        proxies[0].kill()
        await asyncio.wait_for(phone.lost, 2)
        phone.close()
        phone = await Handset.open(SUBSCRIBER.user, SUBSCRIBER.password, "127.0.0.2", port)
        assert await phone.register() == 200
        started = time.monotonic()
        answered = await asyncio.to_thread(did_call, sipp_bin, acr_port, gateway, tmp_path, 2)
        assert answered == [f"127.0.0.1:{phone.local[1]}"], log.read_text()[-3000:]
        assert time.monotonic() - started < 5
        assert len(phone.invites) == 1
    finally:
        if phone is not None:
            phone.close()
        acr.terminate()
        acr.wait(10)
        stop(proxies)

"""The cluster's call path off the network and back, with real nodes: two proxies
(127.0.0.1 and 127.0.0.2, one port), one B2BUA, the ACR pair and a carrier's
gateway (sipp), on the test's MariaDB and Redis (issue 13).

- Phones on either proxy call a PSTN number: proxy → B2BUA → an ACR node
  (round robin, so both take calls) → the carrier, which answers; each call
  has one billed CDR.
- The carrier calls a DID whose home is proxy-1 while its phone is registered
  through proxy-2: the ACR sends it home, proxy-1 on to proxy-2 (which holds
  the phone's TCP flow), and the phone answers. Proxy-1 SIGKILLed, the next
  DID call goes to the backup, proxy-2, and the phone answers again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.acrstack import SippCarrier, acr_command, acr_env
from bench.acrstack import provision as provision_acr
from bench.clusterstack import SECRET, ClusterNode, launch, on_free_ports, start, stop
from bench.faults.callpath import read_cdrs
from bench.faults.lab import clean_env
from bench.proxystack import SIPLINE, Phone, free_port, provision
from sipline.carriers.model import Did
from sipline.carriers.store import AcrStore
from sipline.storage import open_database
from tests.cluster.handset import Handset
from tests.cluster.test_did_backup import did_call
from tests.e2e.test_acr_sipp import CARRIERS, SETTINGS

pytestmark = pytest.mark.e2e

DID = "442079460000"
ALICE = Phone("alice", "alice-Secret1")
DIDPHONE = Phone("+" + DID, "did-Secret1")  # the phone the DID rings
NUMBER = "+4420712345"  # a PSTN number under the carrier's prefix (44), a digit per call
CALL_TIMEOUT = 10.0  # seconds for one call's INVITE, 407 included, on a loaded machine


@dataclass
class Platform:
    proxies: list[ClusterNode]
    b2bua: ClusterNode
    acrs: list[ClusterNode]
    carrier: SippCarrier  # answers our outbound calls
    gateway: SippCarrier  # the carrier's gateway that sends us DID calls (sipp UAC, per call)
    url: str

    @property
    def nodes(self) -> list[ClusterNode]:
        return [*self.proxies, self.b2bua, *self.acrs]

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log_text()[-2000:]}" for n in self.nodes)


@pytest.fixture
def platform(mysql_url: str, redis_url: str, sipp_bin: str, tmp_path: Path) -> Iterator[Platform]:
    carrier = SippCarrier(
        "pstn", 0.01, CARRIERS / "acr_carrier.xml", messages=tmp_path / "pstn-messages.log"
    )
    gateway = SippCarrier("pstn-in", 0.01, CARRIERS / "acr_carrier.xml", prefix="99")
    asyncio.run(provision(mysql_url, [ALICE, DIDPHONE]))
    asyncio.run(provision_acr(mysql_url, [carrier, gateway]))
    carrier.start(sipp_bin, tmp_path)
    try:
        nodes = on_free_ports(lambda started: start_nodes(started, mysql_url, redis_url, tmp_path))
        try:
            yield Platform(nodes[:2], nodes[4], nodes[2:4], carrier, gateway, mysql_url)
        finally:
            stop(nodes)
    finally:
        carrier.stop()


def start_nodes(nodes: list[ClusterNode], url: str, redis_url: str, workdir: Path) -> None:
    """The two proxies, both ACR nodes and the B2BUA on free ports (each appended to
    ``nodes`` once it runs), the DID homed on proxy-1 with proxy-2 its backup."""
    port, b2bua_port = free_port(), free_port()
    acr_ports = {"primary": free_port(), "secondary": free_port()}
    proxies = [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
    b2bua_at = f"127.0.0.1:{b2bua_port}"
    acrs_at = [f"127.0.0.1:{p}" for p in acr_ports.values()]
    asyncio.run(home_did(url, Did(DID, proxies[0], (proxies[1],))))
    for n, host in enumerate(("127.0.0.1", "127.0.0.2"), 1):
        nodes.append(start(
            f"proxy-{n}", host, port, url, redis_url, [*proxies, b2bua_at, *acrs_at], workdir,
            SIPLINE_PROXY__B2BUA=json.dumps([b2bua_at]),
        ))  # fmt: skip
    for node, acr_port in acr_ports.items():
        settings = {
            **SETTINGS,
            "SIPLINE_AUTH__SECRET": SECRET,
            "SIPLINE_ACR__PRIMARY": acrs_at[0],
            "SIPLINE_ACR__SECONDARY": acrs_at[1],
            # The B2BUA and the proxies by address and port; the gateway is a carrier's.
            "SIPLINE_ACR__TRUSTED": json.dumps([b2bua_at, *proxies]),
        }
        env = acr_env(f"127.0.0.1:{acr_port}", url, redis_url, settings, node=node,
                      data_dir=workdir / f"acr-{node}")  # fmt: skip
        nodes.append(launch(f"acr-{node}", acr_command(node), env, "127.0.0.1", acr_port, workdir))
    # The B2BUA last: its first probes find both ACR nodes up (none is skipped
    # for having been slow to start on a loaded machine).
    b2bua_env = clean_env(
        SIPLINE_NODE__NAME="b2bua",
        SIPLINE_LOG__LEVEL="warning",
        SIPLINE_NODE__DRAIN_TIMEOUT="1",
        SIPLINE_DATABASE__URL=f"sqlite:///{workdir / 'b2bua.db'}",
        SIPLINE_REDIS__URL=redis_url,
        SIPLINE_AUTH__SECRET=SECRET,
        SIPLINE_B2BUA__PORT=str(b2bua_port),
        SIPLINE_B2BUA__ACR=json.dumps(acrs_at),
        SIPLINE_B2BUA__TRUSTED=json.dumps(proxies),
        SIPLINE_B2BUA__MEDIA_RELAY="",
    )
    command = [str(SIPLINE), "b2bua", "--config", "configs/single.toml"]
    nodes.append(launch("b2bua", command, b2bua_env, "127.0.0.1", b2bua_port, workdir))


async def home_did(url: str, did: Did) -> None:
    """``did`` in the ACRs' table, in place of any earlier one (on the ports of a try before)."""
    db = await open_database(url)
    try:
        await db.execute("DELETE FROM dids WHERE number = ?", (did.number,))
        await AcrStore(db).add_did(did)
    finally:
        await db.close()


def invites_at(carrier: SippCarrier) -> int:
    """Initial INVITEs the carrier received (retransmissions counted once)."""
    assert carrier.messages is not None
    if not carrier.messages.exists():
        return 0
    seen = set()
    for block in carrier.messages.read_text(errors="replace").split("message received")[1:]:
        text = block.split(":", 1)[1].lstrip()
        if text.startswith("INVITE "):
            call_id = next(
                (line for line in text.splitlines() if line.lower().startswith("call-id:")), ""
            )
            seen.add(call_id)
    return len(seen)


async def billed(url: str, count: int, timeout: float = 10.0) -> list[str]:
    """The ACR nodes of the answered CDRs once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        cdrs = [
            c for c in await read_cdrs(url) if c.answer is not None and c.callee.startswith("44")
        ]
        if len(cdrs) >= count or time.monotonic() > deadline:
            return sorted(c.node for c in cdrs)
        await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_phones_call_off_net_and_a_did_reaches_its_phone_through_the_backup_proxy(
    platform: Platform, sipp_bin: str, tmp_path: Path
) -> None:
    one, two = platform.proxies
    alice = await Handset.open(ALICE.user, ALICE.password, one.host, one.port)
    phone = await Handset.open(DIDPHONE.user, DIDPHONE.password, two.host, two.port)
    try:
        assert await alice.register() == 200, platform.logs()
        assert await phone.register() == 200, platform.logs()

        # -- off-net: phones on both proxies, through the B2BUA and both ACR nodes -----
        for n, caller in enumerate((alice, alice, phone, alice)):
            status = await caller.call(f"{NUMBER}{n:02d}", timeout=CALL_TIMEOUT)
            assert status == 200, (n, status, platform.logs())
        assert invites_at(platform.carrier) == 4
        nodes = await billed(platform.url, 4)
        assert len(nodes) == 4 and set(nodes) == {"primary", "secondary"}, nodes  # round robin

        # -- a DID call: home proxy-1, on to proxy-2 that holds the phone's flow ---------
        answered = await asyncio.to_thread(
            did_call, sipp_bin, _acr_port(platform), platform.gateway, tmp_path, 1
        )
        assert answered == [f"127.0.0.1:{phone.local[1]}"], platform.logs()
        (invite,) = phone.invites
        vias = " ".join(invite.headers.get_all("via"))
        assert f"127.0.0.1:{one.port}" in vias and f"127.0.0.2:{two.port}" in vias, vias

        # -- proxy-1 dies: the DID goes to the backup, proxy-2, and the phone answers -----
        one.kill()
        killed = time.monotonic()
        answered = await asyncio.to_thread(
            did_call, sipp_bin, _acr_port(platform), platform.gateway, tmp_path, 2
        )
        took = time.monotonic() - killed
        assert answered == [f"127.0.0.1:{phone.local[1]}"], platform.logs()
        assert len(phone.invites) == 2
        vias = " ".join(phone.invites[1].headers.get_all("via"))
        assert f"127.0.0.1:{one.port}" not in vias, vias
        assert took < 10, took  # the ACR's probes (0.3 s, 2 failures) or its PDD limit (1 s)
        print(
            f"SIGKILL of the DID's home proxy to its call answered through the backup: {took:.2f} s"
        )

        # -- the phone on the proxy left calls off-net as before --------------------------
        assert await phone.call(f"{NUMBER}99", timeout=CALL_TIMEOUT) == 200, platform.logs()
        assert invites_at(platform.carrier) == 5
        assert len(await billed(platform.url, 5)) == 5
    finally:
        alice.close()
        phone.close()


def _acr_port(platform: Platform) -> int:
    return platform.acrs[0].port

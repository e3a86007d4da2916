"""The call path of the fault experiments, what they count, and how a run goes.

The production path on loopback: a sipp caller (the proxy's side) →
``sipline b2bua`` → ``sipline acr`` primary and secondary (round robin) →
sipp carriers, with the ACRs' carriers, decks and CDRs in MariaDB and their
shared state in a Redis of the experiment's own (``call_path``). A run
(``run``) places ``Load.rate`` calls a second for ``Load.seconds``, each held
``Load.hold`` seconds, and does the experiment's kills and restarts at their
times meanwhile; the CDRs are read once the writers had time to catch up
(``settle``), while every node still runs: nothing is flushed by a graceful
stop that a crash would have lost.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import sippstats
from bench.acrstack import HOST, REPO, SippCarrier, acr_command, acr_env, provision
from bench.faults.caller import Caller
from bench.faults.counting import Billing, Message, billing, read_messages
from bench.faults.lab import Lab, Program, Redis, clean_env
from bench.proxystack import SIPLINE
from bench.serving import stop
from sipline.carriers.model import Cdr
from sipline.carriers.store import AcrStore
from sipline.net.ports import free_port
from sipline.storage import open_database

SCENARIOS = REPO / "bench" / "scenarios"
SETTLE = 30.0  # at most this long for the CDR writers to catch up after the calls
PREFIX = "44"  # the carriers' deck prefix; every caller dials a number under it


@dataclass(frozen=True, slots=True)
class Load:
    rate: int = 100  # calls per second
    seconds: float = 30.0
    hold: float = 3.0  # seconds an answered call lasts
    spread: float = 0.0  # holds drawn uniformly from hold ± spread
    failover_timeout: float = 2.0  # the B2BUA's [b2bua] failover_timeout

    @property
    def calls(self) -> int:
        return int(self.rate * self.seconds)


@dataclass
class Outcome:
    """What one experiment counted; None where it does not apply."""

    experiment: str
    calls: int = 0
    answered: int = 0
    refused: int = 0
    failed: int = 0  # neither answered nor refused: timed out, or an unexpected answer
    setup_ms: list[float] = field(default_factory=list, repr=False)
    cdrs: Billing | None = None
    ghost_invites: int | None = None
    carrier_invites: int | None = None
    retransmitted_after_failover: int | None = None
    sent_to_dead_node: int | None = None  # new calls sent to a dead node after one failed there
    peak: int | None = None
    limit: int | None = None
    over_limit: int | None = None  # admissions past the limit once shared state had converged
    converged_s: dict[str, float | None] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)

    @property
    def setup_worst_ms(self) -> float | None:
        return max(self.setup_ms) if self.setup_ms else None

    @property
    def setup_p99_ms(self) -> float | None:
        return sippstats.percentile(self.setup_ms, 99)

    def setup_over(self, ms: float) -> int:
        return sum(1 for t in self.setup_ms if t > ms)

    def brief(self) -> str:
        """Every figure it has, on one line (for a failed assertion)."""
        skip = {"setup_ms", "events", "figures", "converged_s"}
        parts = [
            f"{name}={value}"
            for name, value in vars(self).items()
            if name not in skip and value is not None
        ]
        if self.setup_ms:
            parts.append(f"setup_worst_ms={self.setup_worst_ms} over_200ms={self.setup_over(200)}")
        parts += [f"converged_s={self.converged_s}"] if self.converged_s else []
        parts += [f"figures={self.figures}"] if self.figures else []
        parts.append("events=" + ", ".join(f"{t:g}s {what}" for t, what in self.events))
        return " ".join(parts)


# -- the call path ------------------------------------------------------------------------------
@dataclass
class CallPath:
    lab: Lab
    url: str  # the ACRs' database
    redis: Redis
    carriers: list[SippCarrier]
    primary: Program
    primary_port: int
    secondary: Program
    secondary_port: int
    b2bua: Program
    b2bua_port: int
    load: Load

    def caller(self, prefix: str, load: Load | None = None, user: str = "caller") -> Caller:
        load = load or self.load
        return Caller(
            self.lab.sipp, self.lab.workdir / f"caller-{prefix}", self.b2bua_port, prefix,
            load.rate, load.calls, load.hold, user, load.spread,
        )  # fmt: skip

    def cdrs(self) -> list[Cdr]:
        return asyncio.run(read_cdrs(self.url))

    def carrier_messages(self) -> list[Message]:
        """Every message the carriers received and sent, by time."""
        messages: list[Message] = []
        for carrier in self.carriers:
            if carrier.messages is not None and carrier.messages.exists():
                with carrier.messages.open(errors="replace") as lines:
                    messages += read_messages(lines)
        return sorted(messages, key=lambda m: m.time)


async def read_cdrs(url: str) -> list[Cdr]:
    db = await open_database(url)
    try:
        return await AcrStore(db).cdrs(10_000_000)
    finally:
        await db.close()


def answering(name: str, lab: Lab, capacity: int | None = None) -> SippCarrier:
    """A carrier that answers every call (and its OPTIONS probes), its messages traced."""
    return SippCarrier(
        name, 0.01, SCENARIOS / "acr_carrier.xml", prefix=PREFIX, capacity=capacity,
        messages=lab.workdir / f"carrier-{name}-messages.log",
    )  # fmt: skip


def call_path(
    lab: Lab,
    url: str,
    load: Load,
    carriers: Sequence[SippCarrier],
    *,
    acr: dict[str, str] | None = None,
    b2bua: dict[str, str] | None = None,
    redis: Redis | None = None,
) -> CallPath:
    """Start Redis (unless given), the carriers (their decks in ``url``), both ACR
    nodes and the B2BUA; ``acr`` and ``b2bua`` are SIPLINE_* settings over the defaults."""
    if redis is None:
        redis = lab.redis()
        redis.program.start()
    asyncio.run(provision(url, carriers))
    for carrier in carriers:
        carrier.start(lab.sipp, lab.workdir / "carriers")
        lab.watch(carrier.process)
    ports = {"primary": free_port(HOST), "secondary": free_port(HOST)}
    nodes = {}
    for node, port in ports.items():
        settings = {
            "SIPLINE_ACR__PRIMARY": f"{HOST}:{ports['primary']}",
            "SIPLINE_ACR__SECONDARY": f"{HOST}:{ports['secondary']}",
            "SIPLINE_ACR__EXPLORATION": "0",
            # The lab plays every peer from 127.0.0.1 (the B2BUA on a free port, the
            # readiness probes from any): trusted as a B2BUA is by address and port.
            "SIPLINE_ACR__TRUSTED": '["127.0.0.1"]',
            "SIPLINE_NODE__DATA_DIR": str(lab.workdir / "data"),
            **(acr or {}),
        }
        env = acr_env(f"{HOST}:{port}", url, redis.url, settings, node=node)
        nodes[node] = lab.node(f"acr-{node}", acr_command(node), port, env)
        nodes[node].start()
    acr_nodes = [f"{HOST}:{ports['primary']}", f"{HOST}:{ports['secondary']}"]
    b2bua_port = free_port(HOST)
    node = b2bua_node(lab, b2bua_port, acr_nodes, redis.url, load, **(b2bua or {}))
    return CallPath(
        lab, url, redis, list(carriers), nodes["primary"], ports["primary"], nodes["secondary"],
        ports["secondary"], node, b2bua_port, load,
    )  # fmt: skip


def b2bua_node(
    lab: Lab, port: int, acr: Sequence[str], redis_url: str, load: Load, **settings: str
) -> Program:
    """``sipline b2bua`` on ``port``, started, in front of ``acr`` (HOST:PORT), its
    accounts in the lab's ``b2bua_database``; ``settings`` are SIPLINE_* over the defaults."""
    nodes = ", ".join(f'"{address}"' for address in acr)
    env = clean_env(
        SIPLINE_LOG__LEVEL="warning",
        SIPLINE_NODE__DRAIN_TIMEOUT="1",
        SIPLINE_DATABASE__URL=f"sqlite:///{b2bua_database(lab)}",
        SIPLINE_REDIS__URL=redis_url,
        SIPLINE_B2BUA__PORT=str(port),
        SIPLINE_B2BUA__ACR=f"[{nodes}]",
        SIPLINE_B2BUA__FAILOVER_TIMEOUT=str(load.failover_timeout),
        SIPLINE_B2BUA__MEDIA_RELAY="",
        SIPLINE_B2BUA__TRUSTED='["127.0.0.1"]',  # sipp plays the proxy
        **settings,
    )
    command = [str(SIPLINE), "b2bua", "--config", "configs/single.toml"]
    node = lab.node("b2bua", command, port, env)
    node.start()
    return node


def b2bua_database(lab: Lab) -> Path:
    return lab.workdir / "b2bua.db"


def run(
    lab: Lab, callers: Sequence[Caller], timeline: Sequence[tuple[float, Callable[[], None]]]
) -> None:
    """Start the callers, do each ``(seconds after the start, action)`` in turn, wait for the callers."""
    for caller in callers:
        caller.start()
        lab.watch(caller.process)
    start = time.monotonic()
    lab.note("calls start")
    try:
        for at, action in timeline:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
        for caller in callers:
            caller.wait()
        lab.note("calls over")
    finally:
        for caller in callers:
            caller.kill()


def settle(path: CallPath, answered: set[int], prefix: str) -> list[Cdr]:
    """The CDRs once every answered call has a billed one, or once they stop changing
    (at most SETTLE seconds): the writers' batches and spool replays are given time."""
    deadline = time.monotonic() + SETTLE
    last: tuple[int, float] = (-1, time.monotonic())
    while True:
        try:
            cdrs = path.cdrs()
        except Exception:  # noqa: BLE001 - the database may still be coming back
            cdrs = []
        count = billing(cdrs, prefix, answered)
        now = time.monotonic()
        if count.lost == 0 and now - last[1] > 2.0:
            return cdrs
        if len(cdrs) != last[0]:
            last = (len(cdrs), now)
        elif now - last[1] > 8.0:
            return cdrs
        if now > deadline:
            return cdrs
        time.sleep(0.5)


def calls_outcome(name: str, lab: Lab, caller: Caller, started: float) -> Outcome:
    outcomes = caller.outcomes()
    totals = caller.totals()
    created = totals.created if totals is not None else caller.calls
    answered, refused = len(outcomes.answered), len(outcomes.refused)
    return Outcome(
        name, created, answered, refused, created - answered - refused,
        setup_ms=caller.response_times(),
        events=[(round(t - started, 2), what) for t, what in lab.events],
    )  # fmt: skip


def stop_carriers(path: CallPath) -> None:
    """Stop the carriers' sipp before their message logs are read."""
    for carrier in path.carriers:
        stop_peer(carrier.process)


def stop_peer(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        stop(process)

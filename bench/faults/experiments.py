"""The fault experiments of issue 12: load on the wire, real processes killed with SIGKILL, counts.

The call path is the production one on loopback: a sipp caller (the proxy's
side) → ``sipline b2bua`` → ``sipline acr`` primary and secondary (round
robin) → sipp carriers, with the ACRs' carriers, decks and CDRs in MariaDB
and their shared state in a Redis of the experiment's own. Each experiment
places ``Load.rate`` calls a second for ``Load.seconds`` (each held
``Load.hold`` seconds), kills one part at a third of the run, and counts:

- ``acr_kill``: the primary ACR killed and started again ``down`` seconds
  later (issue 12 points 1 and 2): CDRs of answered calls, double bills,
  ghost INVITEs at the carrier, INVITEs the B2BUA retransmitted to the dead
  node after it had failed them over.
- ``failover``: the primary killed for good (point 3): set-up times, calls
  still sent to the dead node once one had failed there.
- ``redis_kill``: Redis killed and started again, empty (point 4): the
  carrier's concurrent calls against its capacity, and how long after Redis
  returned the gateway's health and the carrier's statistics were back.
- ``licence_redis_kill``: the same for the B2BUA's account licences.
- ``spool``: MariaDB killed; while it is down, Redis and then the primary
  ACR killed too (point 5): every answered call's CDR in the database at the end.
- ``registrar``: the proxy's MariaDB killed (point 6): REGISTERs answered 503
  with Retry-After, then 200 with their rows once it is back.

The counts are taken while every node still runs, after the calls are over
and the CDR writers had time to catch up (``settle``): nothing is flushed by
a graceful stop that a crash would have lost.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acr.health import gateway_statuses
from acr.model import Cdr
from acr.stats import open_stats
from acr.store import AcrStore
from bench import sippstats
from bench.acrstack import HOST, REPO, SippCarrier, acr_command, acr_env, provision
from bench.faults.caller import Caller
from bench.faults.counting import (
    Billing,
    Span,
    answered_spans,
    billing,
    ghost_invites,
    invites,
    over_limit,
    peak,
    read_messages,
)
from bench.faults.lab import BlackHole, Lab, Program, Redis, clean_env, retransmitted_after
from bench.proxystack import SIPLINE
from sipline.net.ports import free_port
from sipline.storage import open_database

SCENARIOS = REPO / "bench" / "scenarios"
CONVERGENCE = 2.0  # seconds within which shared state must be whole again after Redis returns
WATCH = 10.0  # seconds we watch for it before calling it not converged
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

    def carrier_messages(self) -> list:
        messages = []
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
    ports = {"primary": free_port(HOST), "secondary": free_port(HOST)}
    nodes = {}
    for node, port in ports.items():
        settings = {
            "SIPLINE_ACR__PRIMARY": f"{HOST}:{ports['primary']}",
            "SIPLINE_ACR__SECONDARY": f"{HOST}:{ports['secondary']}",
            "SIPLINE_ACR__EXPLORATION": "0",
            "SIPLINE_NODE__DATA_DIR": str(lab.workdir / "data"),
            **(acr or {}),
        }
        env = acr_env(f"{HOST}:{port}", url, redis.url, settings, node=node)
        nodes[node] = lab.node(f"acr-{node}", acr_command(node), port, env)
        nodes[node].start()
    b2bua_port = free_port(HOST)
    env = clean_env(
        SIPLINE_LOG__LEVEL="warning",
        SIPLINE_NODE__DRAIN_TIMEOUT="1",
        SIPLINE_DATABASE__URL=f"sqlite:///{lab.workdir / 'b2bua.db'}",
        SIPLINE_REDIS__URL=redis.url,
        SIPLINE_B2BUA__PORT=str(b2bua_port),
        SIPLINE_B2BUA__ACR=f'["{HOST}:{ports["primary"]}", "{HOST}:{ports["secondary"]}"]',
        SIPLINE_B2BUA__FAILOVER_TIMEOUT=str(load.failover_timeout),
        SIPLINE_B2BUA__MEDIA_RELAY="",
        **(b2bua or {}),
    )
    node = lab.node("b2bua", [str(SIPLINE), "b2bua", "--config", "configs/single.toml"],
                    b2bua_port, env)  # fmt: skip
    node.start()
    return CallPath(
        lab, url, redis, list(carriers), nodes["primary"], ports["primary"], nodes["secondary"],
        ports["secondary"], node, b2bua_port, load,
    )  # fmt: skip


def run(
    lab: Lab, callers: Sequence[Caller], timeline: Sequence[tuple[float, Callable[[], None]]]
) -> None:
    """Start the callers, do each ``(seconds after the start, action)`` in turn, wait for the callers."""
    for caller in callers:
        caller.start()
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
    """Stop the carriers' sipp gently, so their message logs are complete."""
    for carrier in path.carriers:
        _stop(carrier.process)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- issue 12, points 1 and 2 -------------------------------------------------------------------
def acr_kill(lab: Lab, url: str, load: Load, down: float = 2.0) -> Outcome:
    """The primary ACR SIGKILLed at a third of the run, started again ``down`` s later."""
    path = call_path(lab, url, load, [answering("main", lab)])
    prefix = "4401"
    caller = path.caller(prefix)
    holes: list[BlackHole] = []

    def kill() -> None:
        lab.crash(path.primary)
        holes.append(lab.black_hole(path.primary_port))

    def revive() -> None:
        lab.revive(path.primary, holes[0])

    started = time.time()
    run(lab, [caller], [(load.seconds / 3, kill), (load.seconds / 3 + down, revive)])
    outcome = calls_outcome("acr-kill", lab, caller, started)
    answered = caller.outcomes().answered
    outcome.cdrs = billing(settle(path, answered, prefix), prefix, answered)
    stop_carriers(path)
    messages = path.carrier_messages()
    outcome.ghost_invites = ghost_invites(messages)
    outcome.carrier_invites = invites(messages)
    # Past failover_timeout (and a margin for a busy machine) the B2BUA had moved on.
    outcome.retransmitted_after_failover = retransmitted_after(
        holes[0].invites(), load.failover_timeout + 0.25
    )
    outcome.events = [(round(t - started, 2), what) for t, what in lab.events]
    return outcome


# -- point 3 ------------------------------------------------------------------------------------
def failover(lab: Lab, url: str, load: Load) -> Outcome:
    """The primary ACR SIGKILLed at a third of the run and left dead (a black hole on its port)."""
    path = call_path(lab, url, load, [answering("main", lab)])
    prefix = "4403"
    caller = path.caller(prefix)
    holes: list[BlackHole] = []
    killed: list[float] = []

    def kill() -> None:
        killed.append(lab.crash(path.primary))
        holes.append(lab.black_hole(path.primary_port))

    started = time.time()
    run(lab, [caller], [(load.seconds / 3, kill)])
    outcome = calls_outcome("failover", lab, caller, started)
    # Calls (Call-IDs) whose first INVITE reached the dead node once a call had
    # failed there (failover_timeout after the kill, and a margin).
    first: dict[str, float] = {}
    for seen in holes[0].invites():
        first.setdefault(seen.call_id, seen.time)
    noticed = killed[0] + load.failover_timeout + 0.25
    outcome.sent_to_dead_node = sum(1 for t in first.values() if t > noticed)
    outcome.figures["sent_to_dead_node_in_all"] = len(first)
    return outcome


# -- point 4 ------------------------------------------------------------------------------------
def redis_kill(lab: Lab, url: str, load: Load, capacity: int, down: float = 3.0) -> Outcome:
    """Redis SIGKILLed at a third of the run and started again, empty, ``down`` s later,
    under more calls than the carrier's capacity (shared by both ACR nodes).

    Counted at the carrier (its 200s and BYEs): the peak of its concurrent calls,
    the calls admitted while Redis was away, and the admissions past the capacity
    once shared state should have converged (CONVERGENCE after Redis returned).
    Watched after Redis returned: when the gateway read "up" again and the
    statistics held their attempts from before the kill (``converged_s``); at
    the end, the shared attempts against the INVITEs the carrier received."""
    carrier = answering("main", lab, capacity)
    fast_probes = {"SIPLINE_ACR__PROBE_INTERVAL": "0.5", "SIPLINE_ACR__PROBE_SUCCESSES": "1"}
    path = call_path(lab, url, load, [carrier], acr=fast_probes)
    prefix = "4404"
    caller = path.caller(prefix)
    before: dict[str, Any] = {}
    times: dict[str, float] = {}
    converged: dict[str, float | None] = {}

    def kill() -> None:
        before["attempts"] = asyncio.run(shared_attempts(path.redis.url, carrier.name))
        before["health"] = _health(path.redis.url, carrier.address)
        times["killed"] = lab.crash(path.redis.program)

    def revive() -> None:
        times["back"] = lab.revive(path.redis.program)
        converged.update(
            watch_convergence(path.redis.url, carrier, before["attempts"], times["back"])
        )

    started = time.time()
    run(lab, [caller], [(load.seconds / 3, kill), (load.seconds / 3 + down, revive)])
    outcome = calls_outcome("redis-kill", lab, caller, started)
    answered = caller.outcomes().answered
    outcome.cdrs = billing(settle(path, answered, prefix), prefix, answered)
    attempts = asyncio.run(shared_attempts(path.redis.url, carrier.name))
    stop_carriers(path)
    messages = path.carrier_messages()
    spans = answered_spans(messages)
    outcome.converged_s = converged
    outcome.figures.update(
        attempts_before=round(before["attempts"], 1),
        health_before=before["health"],
        attempts_at_end=round(attempts, 1),
        carrier_invites=invites(messages),
    )
    count_admissions(outcome, spans, capacity, times["killed"], times["back"])
    return outcome


def count_admissions(
    outcome: Outcome, spans: Sequence[Span], limit: int, killed: float, back: float
) -> None:
    """The peak against ``limit``, the calls admitted while Redis was away, and
    the admissions past ``limit`` from CONVERGENCE after it was back."""
    converged = back + CONVERGENCE
    outcome.peak, outcome.limit = peak(spans), limit
    outcome.over_limit = over_limit(spans, limit, converged)
    outcome.figures.update(
        admitted_in_outage=sum(1 for s in spans if killed <= s.start < back),
        peak_before=peak([s for s in spans if s.start < killed]),
        peak_converged=peak(_after(spans, converged)),
    )


def _after(spans: Sequence[Span], since: float) -> list[Span]:
    """The spans admitted at or after ``since``, and the older ones still up then, cut to start there."""
    return [
        s if s.start >= since else Span(since, s.end, s.call_id, s.number)
        for s in spans
        if s.end is None or s.end > since
    ]


async def shared_attempts(redis_url: str, carrier: str) -> float:
    """The carrier's decayed attempts towards PREFIX, as any node reads them from Redis."""
    stats = open_stats(redis_url, 3600.0)
    try:
        await stats.sync()
        return stats.quality(carrier, PREFIX).attempts
    finally:
        await stats.close()


def _health(redis_url: str, address: str) -> str:
    return asyncio.run(gateway_statuses(redis_url, [address]))[address]


def watch_convergence(
    redis_url: str, carrier: SippCarrier, attempts: float, back: float
) -> dict[str, float | None]:
    """Seconds after ``back`` until the gateway reads "up" again and the statistics hold
    the ``attempts`` they held before the kill; None if not within WATCH."""
    found: dict[str, float | None] = {"health": None, "stats": None}
    while time.time() < back + WATCH and None in found.values():
        if found["health"] is None and _health(redis_url, carrier.address) == "up":
            found["health"] = round(time.time() - back, 2)
        if found["stats"] is None:
            if asyncio.run(shared_attempts(redis_url, carrier.name)) >= attempts:
                found["stats"] = round(time.time() - back, 2)
        time.sleep(0.1)
    return found


def licence_redis_kill(lab: Lab, load: Load, licence: int, down: float = 3.0) -> Outcome:
    """The B2BUA's licence counters: calls of one account over its licence (grace 0 h:
    refused at once), Redis SIGKILLed at a third of the run and started again, empty,
    ``down`` s later. A sipp UAS stands in for the ACR pair; the account's
    concurrent calls are counted there, as for the carrier in ``redis_kill``."""
    redis = lab.redis()
    redis.program.start()
    database = lab.workdir / "b2bua.db"
    asyncio.run(provision_account(f"sqlite:///{database}", "acme", "acme-caller", licence))
    far = SippCarrier(
        "far", 0.01, SCENARIOS / "acr_carrier.xml", messages=lab.workdir / "far-messages.log"
    )
    far.start(lab.sipp, lab.workdir / "carriers")
    b2bua_port = free_port(HOST)
    env = clean_env(
        SIPLINE_LOG__LEVEL="warning",
        SIPLINE_NODE__DRAIN_TIMEOUT="1",
        SIPLINE_DATABASE__URL=f"sqlite:///{database}",
        SIPLINE_REDIS__URL=redis.url,
        SIPLINE_B2BUA__PORT=str(b2bua_port),
        SIPLINE_B2BUA__ACR=f'["{far.address}"]',
        SIPLINE_B2BUA__FAILOVER_TIMEOUT=str(load.failover_timeout),
        SIPLINE_B2BUA__MEDIA_RELAY="",
        SIPLINE_B2BUA__GRACE_HOURS="0",
    )
    node = lab.node("b2bua", [str(SIPLINE), "b2bua", "--config", "configs/single.toml"],
                    b2bua_port, env)  # fmt: skip
    node.start()
    caller = Caller(lab.sipp, lab.workdir / "caller", b2bua_port, "4405", load.rate, load.calls,
                    load.hold, "acme-caller", load.spread)  # fmt: skip
    times: dict[str, float] = {}

    def kill() -> None:
        times["killed"] = lab.crash(redis.program)

    def revive() -> None:
        times["back"] = lab.revive(redis.program)

    started = time.time()
    run(lab, [caller], [(load.seconds / 3, kill), (load.seconds / 3 + down, revive)])
    outcome = calls_outcome("licence-redis-kill", lab, caller, started)
    time.sleep(1.0)  # the last BYEs reach the far side
    _stop(far.process)
    assert far.messages is not None
    with far.messages.open(errors="replace") as lines:
        spans = answered_spans(read_messages(lines))
    count_admissions(outcome, spans, licence, times["killed"], times["back"])
    return outcome


async def provision_account(url: str, account: str, user: str, licence: int) -> None:
    """A subscriber ``user``@example.com of ``account``, whose licence is ``licence`` calls."""
    from b2bua.accounts import Accounts
    from sipline.storage import Subscribers, migrate

    db = await open_database(url)
    try:
        await migrate(db)
        await Subscribers(db).add(f"{user}@example.com", "secret", account=account)
        await Accounts(db).set(account, licence, grace_hours=0)
    finally:
        await db.close()


# -- point 5 ------------------------------------------------------------------------------------
def spool(lab: Lab, mariadb: Any, load: Load) -> Outcome:
    """MariaDB (``mariadb``, a sipline.storage.testing.PrivateMariaDB of the experiment's
    own, started) SIGKILLed at a fifth of the run; while it is down, Redis is killed and
    started again (empty), then the primary ACR killed; MariaDB returns at four fifths,
    then the primary. Every answered call's CDR must be in the database at the end."""
    server = mariadb_server(mariadb)
    url = server.fresh_database()
    path = call_path(lab, url, load, [answering("main", lab)])
    prefix = "4406"
    caller = path.caller(prefix)
    fifth = load.seconds / 5
    holes: list[BlackHole] = []

    def kill_acr() -> None:
        lab.crash(path.primary)
        holes.append(lab.black_hole(path.primary_port))

    def revive_database() -> None:
        mariadb.restart()
        lab.note("mariadb back")
        lab.revive(path.primary, holes[0])  # it needs the database to start

    def kill_database() -> None:
        mariadb.kill()
        lab.note("mariadb killed")

    timeline = [
        (fifth, kill_database),
        (2 * fifth, lambda: lab.crash(path.redis.program)),
        (2 * fifth + 1.0, lambda: lab.revive(path.redis.program)),
        (3 * fifth, kill_acr),
        (4 * fifth, revive_database),
    ]
    started = time.time()
    run(lab, [caller], timeline)
    outcome = calls_outcome("spool", lab, caller, started)
    answered = caller.outcomes().answered
    outcome.cdrs = billing(settle(path, answered, prefix), prefix, answered)
    return outcome


def mariadb_server(mariadb: Any) -> Any:
    from sipline.storage.testing import MariaDB

    assert mariadb.port is not None, "start() the PrivateMariaDB first"
    return MariaDB(HOST, mariadb.port)


# -- point 6 ------------------------------------------------------------------------------------
def registrar(lab: Lab, mariadb: Any, phones: int = 50, rate: int = 50) -> Outcome:
    """The proxy's MariaDB SIGKILLed: ``phones`` phones register (digest) while it is
    down, and again once it is back. Counted: 503s with Retry-After while it is down
    (``refused``; any other answer is ``failed``), then 200s (``answered``) and the
    binding rows written (``figures["rows"]``)."""
    from bench.proxystack import (
        Phone,
        numbered_phones,
        proxy_command,
        proxy_env,
        register_command,
        users_csv,
    )
    from bench.proxystack import provision as provision_phones

    server = mariadb_server(mariadb)
    url = server.fresh_database()
    stack: list[Phone] = numbered_phones(phones, prefix="f")
    asyncio.run(provision_phones(url, stack))
    port = free_port(HOST)
    proxy = lab.program("proxy", proxy_command(), lambda: _proxy_ready(port), proxy_env(port, url))
    proxy.start()
    csv = lab.workdir / "phones.csv"
    csv.write_text(users_csv(stack))

    def register(scenario: str, name: str) -> sippstats.SippTotals | None:
        workdir = lab.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        command = register_command(
            lab.sipp, SCENARIOS / scenario, port, csv, free_port(HOST), calls=phones, rate=rate
        )
        subprocess.run(command, cwd=workdir, capture_output=True, timeout=120)
        try:
            return sippstats.read_totals((workdir / "register-stats.csv").read_text())
        except (OSError, ValueError):
            return None

    started = time.time()
    mariadb.kill()
    lab.note("mariadb killed")
    during = register("register_unavailable.xml", "during")
    mariadb.restart()
    lab.note("mariadb back")
    after = register("register.xml", "after")
    outcome = Outcome("registrar", events=[(round(t - started, 2), w) for t, w in lab.events])
    outcome.calls = phones
    outcome.refused = during.successful if during is not None else 0  # 503 + Retry-After
    outcome.failed = phones - outcome.refused
    outcome.answered = after.successful if after is not None else 0  # 200 once it is back
    outcome.figures["rows"] = asyncio.run(_bindings(url, [p.aor for p in stack]))
    return outcome


def _proxy_ready(port: int) -> bool:
    from bench.proxystack import answers_options

    answer = answers_options(port, timeout=0.2)
    return answer is not None and answer.startswith(b"SIP/2.0 200 ")


async def _bindings(url: str, aors: Sequence[str]) -> int:
    """How many of ``aors`` have a binding row."""
    db = await open_database(url)
    try:
        rows = await db.fetchall("SELECT DISTINCT aor FROM locations")
    finally:
        await db.close()
    found = {row[0] for row in rows}
    return sum(1 for aor in aors if aor in found)


def workdir_of(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path

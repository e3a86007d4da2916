"""Issue 12, point 4: shared state after Redis is SIGKILLed and started again, empty.

- ``redis_kill``: a carrier's capacity shared by both ACR nodes, its
  gateway's health and its statistics.
- ``licence_redis_kill``: an account's licence shared by the B2BUAs.

Concurrent calls are counted where they are real, at the sipp peer that
answered them (its 200s and BYEs): the peak against the limit, the calls
admitted while Redis was away, and the admissions past the limit once
shared state should have converged (CONVERGENCE after Redis returned).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from acr.health import gateway_statuses
from acr.stats import open_stats
from bench.acrstack import HOST, SippCarrier
from bench.faults.caller import Caller
from bench.faults.callpath import (
    PREFIX,
    SCENARIOS,
    Load,
    Outcome,
    answering,
    b2bua_database,
    b2bua_node,
    call_path,
    calls_outcome,
    run,
    settle,
    stop_carriers,
    stop_peer,
)
from bench.faults.counting import (
    Span,
    answered_spans,
    billing,
    invites,
    over_limit,
    peak,
    read_messages,
)
from bench.faults.lab import Lab
from sipline.net.ports import free_port
from sipline.storage import Subscribers, migrate, open_database
from sipline.storage.accounts import Accounts

CONVERGENCE = 2.0  # seconds within which shared state must be whole again after Redis returns
# An ACR node frees a call's room when its BYE arrives and relays the BYE once the
# call's CDR is in its journal (a group commit, milliseconds): a new call may reach
# the carrier that much before the BYE. Not counted as past the limit; reported.
BYE_GRACE = 0.05
WATCH = 10.0  # seconds we watch for it before calling it not converged


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
    outcome.over_limit = over_limit(spans, limit, converged, BYE_GRACE)
    outcome.figures.update(
        over_limit_exact=over_limit(spans, limit, converged),
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
    database = f"sqlite:///{b2bua_database(lab)}"
    asyncio.run(provision_account(database, "acme", "acme-caller", licence))
    far = SippCarrier(
        "far", 0.01, SCENARIOS / "acr_carrier.xml", messages=lab.workdir / "far-messages.log"
    )
    far.start(lab.sipp, lab.workdir / "carriers")
    lab.watch(far.process)
    b2bua_port = free_port(HOST)
    b2bua_node(lab, b2bua_port, [far.address], redis.url, load, SIPLINE_B2BUA__GRACE_HOURS="0")
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
    stop_peer(far.process)
    assert far.messages is not None
    with far.messages.open(errors="replace") as lines:
        spans = answered_spans(read_messages(lines))
    count_admissions(outcome, spans, licence, times["killed"], times["back"])
    return outcome


async def provision_account(url: str, account: str, user: str, licence: int) -> None:
    """A subscriber ``user``@example.com of ``account``, whose licence is ``licence`` calls."""
    db = await open_database(url)
    try:
        await migrate(db)
        await Subscribers(db).add(f"{user}@example.com", "secret", account=account)
        await Accounts(db).set(account, licence, grace_hours=0)
    finally:
        await db.close()

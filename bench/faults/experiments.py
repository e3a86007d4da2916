"""The fault experiments of issue 12 on the ACR's call path: nodes killed, hung, left dead.

- ``acr_kill``: the primary ACR SIGKILLed and started again ``down`` seconds
  later (points 1 and 2): CDRs of answered calls, double bills, ghost
  INVITEs at the carrier, INVITEs the B2BUA retransmitted to the dead node
  after it had failed them over; then how long lone calls' CDRs take to be
  written (``cdr_lag``).
- ``acr_freeze``: the primary ACR stopped (SIGSTOP) and resumed (point 2, the
  ACR's half): the INVITEs queued in its socket meanwhile must not reach a
  carrier, nor any call be billed twice.
- ``failover``: the primary killed for good (point 3): set-up times, calls
  still sent to the dead node once one had failed there.
- ``spool``: MariaDB killed; while it is down, Redis and then the primary ACR
  killed too (point 5): every answered call's CDR in the database at the end.

Shared state (point 4) is in ``bench.faults.shared``, the registrar (point 6)
in ``bench.faults.registrar``.
"""

from __future__ import annotations

import asyncio
import time

from bench.faults.callpath import (
    CallPath,
    Load,
    Outcome,
    answering,
    call_path,
    calls_outcome,
    run,
    settle,
    stop_carriers,
)
from bench.faults.counting import billing, ghost_invites, invites
from bench.faults.lab import BlackHole, Lab, mariadb_server, retransmitted_after
from sipline.storage import open_database
from sipline.storage.testing import PrivateMariaDB


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
    outcome.figures["cdr_lag_ms"] = cdr_lag(path)
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


def cdr_lag(path: CallPath, calls: int = 5) -> list[float]:
    """Milliseconds from an ACR node taking a call's BYE (the CDR's end) to its row in
    the database, for ``calls`` lone calls one a second (point 1: cdr_batch_ms bounds
    the writer even when nothing else is pending)."""
    lone = Load(1, calls, 0.2, failover_timeout=path.load.failover_timeout)
    caller = path.caller("4409", lone)
    caller.start()
    path.lab.watch(caller.process)
    try:
        lags = asyncio.run(_first_seen(path.url, "4409", calls, calls + 15.0))
    finally:
        caller.wait()
    return sorted(round(lag * 1000) for lag in lags.values())


async def _first_seen(url: str, prefix: str, count: int, timeout: float) -> dict[str, float]:
    """Seconds from each CDR's end (under ``prefix``) to its row being read, polling every 10 ms."""
    db = await open_database(url)
    seen: dict[str, float] = {}
    try:
        deadline = time.monotonic() + timeout
        while len(seen) < count and time.monotonic() < deadline:
            rows = await db.fetchall(
                "SELECT callee, ended_at FROM cdrs WHERE callee LIKE ?", (f"{prefix}%",)
            )
            now = time.time()
            for callee, ended in rows:
                seen.setdefault(callee, now - ended)
            await asyncio.sleep(0.01)
    finally:
        await db.close()
    return seen


def acr_freeze(lab: Lab, url: str, load: Load, frozen: float = 3.0) -> Outcome:
    """The primary ACR stopped (SIGSTOP) at a third of the run for ``frozen`` s, then
    resumed (SIGCONT): the INVITEs that queued up in its socket meanwhile, given up
    by the B2BUA long since, must not be routed (their X-Sipline-Deadline passed),
    nor any call billed twice (point 2, the ACR's half)."""
    path = call_path(lab, url, load, [answering("main", lab)])
    prefix = "4402"
    caller = path.caller(prefix)

    def freeze() -> None:
        path.primary.freeze()
        lab.note("acr-primary stopped")

    def thaw() -> None:
        path.primary.thaw()
        lab.note("acr-primary resumed")

    started = time.time()
    run(lab, [caller], [(load.seconds / 3, freeze), (load.seconds / 3 + frozen, thaw)])
    outcome = calls_outcome("acr-freeze", lab, caller, started)
    answered = caller.outcomes().answered
    outcome.cdrs = billing(settle(path, answered, prefix), prefix, answered)
    stop_carriers(path)
    messages = path.carrier_messages()
    outcome.ghost_invites = ghost_invites(messages)
    outcome.carrier_invites = invites(messages)
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


# -- point 5 ------------------------------------------------------------------------------------
def spool(lab: Lab, mariadb: PrivateMariaDB, load: Load) -> Outcome:
    """MariaDB (``mariadb``, the experiment's own, started) SIGKILLed at a fifth of the run; while it is down, Redis is killed and
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

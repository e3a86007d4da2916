"""Issue 12, points 1 and 2: the primary ACR SIGKILLed under load and started again.

Caller (sipp) → sipline b2bua → sipline acr primary/secondary → carrier
(sipp), CDRs in MariaDB, shared state in a Redis of the test's own. The
primary is killed at a third of the run; while it is dead its port is a
black hole (a dead host sends no ICMP); it starts again DOWN seconds later.
One run, three tests: what it must not lose (point 1), what must not come
back as a ghost (point 2), and, after the calls, how soon lone calls' CDRs
are in the database (point 1: cdr_batch_ms bounds the writer).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.faults.callpath import Load, Outcome
from bench.faults.experiments import acr_kill
from bench.faults.lab import Lab
from sipline.storage.testing import MariaDB

pytestmark = pytest.mark.e2e

# 900 calls at 50/s, 3 s each; failover_timeout 1 s so that the B2BUA's
# retransmissions of an INVITE (0.5, 1.5, 3.5 s ...) go on past its failover
# while the primary is dead, and again once it is back.
LOAD = Load(rate=50, seconds=18, hold=3, failover_timeout=1.0)
DOWN = 2.0  # seconds the primary stays dead (then it takes ~1 s to start)
CDR_BATCH_MS = 200  # [acr] cdr_batch_ms, the default
LAG_SLACK_MS = 300  # the journal's commit, the insert, our 10 ms polls, a loaded machine


@pytest.fixture(scope="module")
def killed(
    sipp_bin: str, redis_server_bin: str, mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    lab = Lab(tmp_path_factory.mktemp("acr-kill"), sipp_bin)
    url = mariadb.fresh_database()
    try:
        yield acr_kill(lab, url, LOAD, down=DOWN)
    finally:
        lab.close()
        mariadb.drop_database(url)


@pytest.mark.timeout(300)
def test_every_answered_call_has_exactly_one_cdr_after_the_acr_is_killed(killed: Outcome) -> None:
    cdrs = killed.cdrs
    assert cdrs is not None
    assert killed.answered >= 0.9 * killed.calls, killed.brief()
    assert killed.failed == 0, killed.brief()  # every call answered or refused, none left hanging
    assert cdrs.lost == 0, f"{cdrs.lost} answered calls without a CDR: {killed.brief()}"
    assert cdrs.duplicated == 0 and cdrs.unanswered == 0, killed.brief()


@pytest.mark.timeout(300)
def test_no_abandoned_invite_reaches_a_carrier_and_no_call_is_billed_twice(killed: Outcome) -> None:
    cdrs = killed.cdrs
    assert cdrs is not None
    assert killed.retransmitted_after_failover == 0, killed.brief()  # the B2BUA stopped them
    assert killed.ghost_invites == 0, killed.brief()  # the restarted ACR routed none
    assert cdrs.duplicated == 0 and cdrs.ghosts_charged == 0, killed.brief()


@pytest.mark.timeout(300)
def test_a_lone_call_s_cdr_is_written_within_cdr_batch_ms_of_its_bye(killed: Outcome) -> None:
    lags = killed.figures["cdr_lag_ms"]
    assert len(lags) == 5, killed.brief()
    assert max(lags) <= CDR_BATCH_MS + LAG_SLACK_MS, killed.brief()

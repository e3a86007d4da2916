"""Issue 12, point 2, the ACR's half: a hung ACR node routes nothing the B2BUA gave up.

The primary ACR is stopped (SIGSTOP) under load for FROZEN seconds: its
socket keeps taking the B2BUA's INVITEs, it reads none, and the B2BUA fails
those calls over to the secondary. Resumed (SIGCONT), it reads them all at
once: each is past the deadline the B2BUA stamped on it (X-Sipline-Deadline),
so none may reach a carrier, and no call is billed twice.
"""

from __future__ import annotations

import pytest

from bench.faults.callpath import Load
from bench.faults.experiments import acr_freeze
from bench.faults.lab import Lab

pytestmark = pytest.mark.e2e

LOAD = Load(rate=50, seconds=15, hold=2, failover_timeout=1.0)
FROZEN = 3.0


@pytest.mark.timeout(300)
def test_invites_queued_at_a_hung_acr_never_reach_a_carrier(mysql_url: str, lab: Lab) -> None:
    outcome = acr_freeze(lab, mysql_url, LOAD, FROZEN)
    cdrs = outcome.cdrs
    assert cdrs is not None
    assert outcome.answered >= 0.9 * outcome.calls, outcome.brief()
    assert outcome.ghost_invites == 0, outcome.brief()
    assert cdrs.duplicated == 0 and cdrs.ghosts_charged == 0, outcome.brief()
    assert cdrs.lost == 0 and cdrs.unanswered == 0, outcome.brief()

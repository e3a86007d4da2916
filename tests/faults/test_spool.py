"""Issue 12, point 5: a CDR accepted for writing survives the loss of MariaDB, Redis
or the ACR process.

MariaDB (the test's own) is SIGKILLed at a fifth of the run; while it is down
Redis is SIGKILLed and started again empty, then the primary ACR SIGKILLed;
MariaDB comes back at four fifths, then the primary. At the end every
answered call has exactly one CDR in the database.
"""

from __future__ import annotations

import pytest

from bench.faults.callpath import Load
from bench.faults.experiments import spool
from bench.faults.lab import Lab
from sipline.storage.testing import PrivateMariaDB

pytestmark = pytest.mark.e2e

LOAD = Load(rate=40, seconds=20, hold=2, failover_timeout=1.0)


@pytest.mark.timeout(300)
def test_cdrs_spooled_while_mariadb_is_down_survive_redis_and_the_acr_being_killed(
    own_mariadb: PrivateMariaDB, lab: Lab
) -> None:
    outcome = spool(lab, own_mariadb, LOAD)
    cdrs = outcome.cdrs
    assert cdrs is not None
    assert outcome.answered >= 0.9 * outcome.calls, outcome.brief()
    assert cdrs.lost == 0, f"{cdrs.lost} answered calls without a CDR: {outcome.brief()}"
    assert cdrs.duplicated == 0 and cdrs.unanswered == 0, outcome.brief()

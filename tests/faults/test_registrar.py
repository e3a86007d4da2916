"""Issue 12, point 6: a registrar without its location database answers 503 with
Retry-After (phones switch servers on 503, not on 500; RFC 3261 §21.5.4).

The proxy's MariaDB (the test's own) is SIGKILLed; phones register with digest
auth (sipp, register_unavailable.xml: any answer but 503 with a Retry-After
fails the call); MariaDB is started again and they register (register.xml):
every 200 has its row.
"""

from __future__ import annotations

import pytest

from bench.faults.lab import Lab
from bench.faults.registrar import registrar
from sipline.storage.testing import PrivateMariaDB

pytestmark = pytest.mark.e2e

PHONES = 50


@pytest.mark.timeout(300)
def test_register_gets_503_with_retry_after_while_the_location_database_is_down(
    own_mariadb: PrivateMariaDB, lab: Lab
) -> None:
    outcome = registrar(lab, own_mariadb, phones=PHONES)
    assert outcome.refused == PHONES, outcome.brief()  # 503 with Retry-After, each one
    assert outcome.answered == PHONES, outcome.brief()  # 200 once it is back
    assert outcome.figures["rows"] == PHONES, outcome.brief()

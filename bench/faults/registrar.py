"""Issue 12, point 6: the proxy's registrar while its location database is down."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence

from bench import sippstats
from bench.acrstack import HOST
from bench.faults.callpath import SCENARIOS, Outcome
from bench.faults.lab import Lab, mariadb_server
from bench.proxystack import (
    answers_options,
    numbered_phones,
    proxy_command,
    proxy_env,
    register_command,
    users_csv,
)
from bench.proxystack import provision as provision_phones
from sipline.net.ports import free_port
from sipline.storage import open_database
from sipline.storage.testing import PrivateMariaDB


def registrar(lab: Lab, mariadb: PrivateMariaDB, phones: int = 50, rate: int = 50) -> Outcome:
    """The proxy's MariaDB SIGKILLed: ``phones`` phones register (digest) while it is
    down, and again once it is back. Counted: 503s with Retry-After while it is down
    (``refused``; any other answer is ``failed``), then 200s (``answered``) and the
    binding rows written (``figures["rows"]``)."""
    server = mariadb_server(mariadb)
    url = server.fresh_database()
    stack = numbered_phones(phones, prefix="f")
    asyncio.run(provision_phones(url, stack))
    port = free_port(HOST)
    # sipp plays every phone from one address: the flood guard, there for a stranger's
    # burst, would ban it (3000 REGISTERs at 100/s are over 200 messages in 2 s).
    env = proxy_env(port, url, {"SIPLINE_LIMITS__FLOOD_DENSITY": "0"})
    proxy = lab.program("proxy", proxy_command(), lambda: _proxy_ready(port), env)
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

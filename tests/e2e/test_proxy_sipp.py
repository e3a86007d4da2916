"""`sipline proxy` as a real process, with real sipp phones registering and calling through it.

Each test starts the proxy on a free port of 127.0.0.1 with a database of its
own (a fresh SQLite file; MariaDB where the test says so) holding the
subscribers alice, bob and carol. Phones are sipp processes: one registers a
user from a port (register.xml), then a UAS on that same port takes the
user's calls, while a UAC calls through the proxy with a 407 challenge.
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.proxystack import (
    DOMAIN,
    HOST,
    REPO,
    Phone,
    RunningProxy,
    answers_options,
    free_port,
    numbered_phones,
    provision,
    proxy_command,
    proxy_env,
    users_csv,
)
from bench.proxystack import start_proxy as start_proxy_process
from sipline.storage import open_database, pending

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ALICE = Phone("alice", "alice-Secret1")
BOB = Phone("bob", "bob-Secret2")
CAROL = Phone("carol", "carol-Secret3")  # provisioned, never registered
SIPP_TIMEOUT = 30  # seconds: sipp's -timeout; the process is killed 30 s later


@dataclass
class Proxy:
    """The running proxy (``bench.proxystack.start_proxy``) and the sipp phones' workdir."""

    running: RunningProxy
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)  # phone -> the port it registered from

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def url(self) -> str:
        return self.running.url

    def log_text(self) -> str:
        return self.running.log_text()

    def stop(self, timeout: float = 10) -> int:
        return self.running.stop(timeout)


StartProxy = Callable[..., Proxy]


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    """Start ``sipline proxy`` on a database at a URL, its subscribers provisioned first."""
    started: list[Proxy] = []

    def start(
        url: str, phones: Sequence[Phone] | None = (ALICE, BOB, CAROL), **settings: str
    ) -> Proxy:
        if phones is not None:  # None: not even migrated
            asyncio.run(provision(url, phones))
        workdir = tmp_path / f"proxy-{len(started)}"
        workdir.mkdir()
        proxy = Proxy(start_proxy_process(url, workdir, settings), workdir)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.running.kill()


@pytest.fixture
def proxy(start_proxy: StartProxy, sqlite_url: str) -> Proxy:
    return start_proxy(sqlite_url)


# -- sipp ----------------------------------------------------------------------------------
def sipp_args(sipp: str, proxy: Proxy, scenario: str, port: int, *args: str) -> list[str]:
    return [
        sipp, f"{HOST}:{proxy.port}", "-sf", str(SCENARIOS / scenario),
        "-i", HOST, "-p", str(port), "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin",
        "-trace_stat", "-stf", f"{Path(scenario).stem}-{port}.csv",
        "-trace_err", "-error_file", f"{Path(scenario).stem}-{port}-errors.log",
        "-trace_msg", "-message_file", f"{Path(scenario).stem}-{port}-messages.log",
        *args,
    ]  # fmt: skip


def finish(process: subprocess.Popen[bytes], proxy: Proxy, what: str) -> None:
    """Wait for a sipp run and fail with its output and the proxy's log unless it exited 0."""
    try:
        out, _ = process.communicate(timeout=SIPP_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    if process.returncode != 0:
        pytest.fail(
            f"{what}: sipp exited {process.returncode}\n{out[-3000:].decode(errors='replace')}\n"
            f"--- proxy log ---\n{proxy.log_text()[-5000:]}",
            pytrace=False,
        )


def register(
    sipp: str, proxy: Proxy, phones: Sequence[Phone], *, rate: int = 50, port: int | None = None
) -> dict[str, str]:
    """Register ``phones`` from one port; the final sipp statistics."""
    port = port or free_port()
    csv_path = proxy.workdir / f"users-{port}.csv"
    csv_path.write_text(users_csv(phones))
    command = sipp_args(
        sipp, proxy, "register.xml", port,
        "-inf", str(csv_path), "-au", "[field0]", "-ap", "[field2]", "-auth_uri", DOMAIN,
        "-key", "expires", "3600", "-m", str(len(phones)), "-r", str(rate),
    )  # fmt: skip
    process = subprocess.Popen(command, cwd=proxy.workdir, stdout=subprocess.PIPE)
    finish(process, proxy, f"registering {len(phones)} phone(s)")
    for phone in phones:
        proxy.ports[phone.user] = port
    return statistics(proxy.workdir / f"register-{port}.csv")


def callee(sipp: str, proxy: Proxy, scenario: str, phone: Phone = BOB) -> subprocess.Popen[bytes]:
    """A UAS for ``phone`` on the port it registered from, for one call."""
    port = proxy.ports[phone.user]
    command = sipp_args(sipp, proxy, scenario, port, "-s", phone.user, "-m", "1")
    return subprocess.Popen(command, cwd=proxy.workdir, stdout=subprocess.PIPE)


def call(
    sipp: str, proxy: Proxy, scenario: str, to: Phone = BOB, caller: Phone = ALICE
) -> subprocess.Popen[bytes]:
    """One call from ``caller`` (on the port it registered from) to ``to``."""
    port = proxy.ports.get(caller.user) or free_port()
    csv_path = proxy.workdir / f"caller-{caller.user}.csv"
    csv_path.write_text(users_csv([caller]))
    command = sipp_args(
        sipp, proxy, scenario, port,
        "-inf", str(csv_path), "-au", "[field0]", "-ap", "[field2]",
        "-auth_uri", f"{to.user}@{to.domain}", "-s", to.user, "-m", "1", "-d", "300",
    )  # fmt: skip
    return subprocess.Popen(command, cwd=proxy.workdir, stdout=subprocess.PIPE)


def statistics(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    return dict(zip(rows[0], rows[-1], strict=False))


def bindings(url: str) -> list[tuple[str, str, str, str]]:
    """(aor, contact, received, transport) of every stored binding."""

    async def fetch() -> list[tuple[str, str, str, str]]:
        db = await open_database(url)
        try:
            rows = await db.fetchall(
                "SELECT aor, contact, received, transport FROM locations ORDER BY aor"
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]
        finally:
            await db.close()

    return asyncio.run(fetch())


def two_party_call(sipp: str, proxy: Proxy, uas: str, uac: str) -> None:
    register(sipp, proxy, [ALICE])
    register(sipp, proxy, [BOB])
    bob = callee(sipp, proxy, uas)
    alice = call(sipp, proxy, uac)
    finish(alice, proxy, f"alice ({uac})")
    finish(bob, proxy, f"bob ({uas})")


# -- the tests ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_digest_registration_stores_the_binding_with_its_source(
    sipp_bin: str, start_proxy: StartProxy, backend: str, request: pytest.FixtureRequest
) -> None:
    proxy = start_proxy(request.getfixturevalue(f"{backend}_url"))
    stats = register(sipp_bin, proxy, [ALICE])
    assert (stats["SuccessfulCall(C)"], stats["FailedCall(C)"]) == ("1", "0")
    port = proxy.ports["alice"]
    assert bindings(proxy.url) == [
        (
            "alice@example.com",
            f"sip:alice@{HOST}:{port};transport=UDP",
            f"{HOST}:{port}",
            "UDP",
        )
    ]


def test_options_to_the_proxy_itself_lists_its_capabilities(proxy: Proxy) -> None:
    answer = answers_options(proxy.port)
    assert answer is not None and answer.startswith(b"SIP/2.0 200 ")
    for header in (b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER", b"Accept: ", b"Supported: "):
        assert header in answer


def test_call_between_registered_subscribers_is_answered_and_ended(
    sipp_bin: str, proxy: Proxy
) -> None:
    two_party_call(sipp_bin, proxy, "uas.xml", "call_uac.xml")


def test_call_to_a_subscriber_without_binding_gets_480(sipp_bin: str, proxy: Proxy) -> None:
    register(sipp_bin, proxy, [ALICE])
    alice = call(sipp_bin, proxy, "call_uac_unavailable.xml", to=CAROL)
    finish(alice, proxy, "alice calling carol")


def test_cancel_while_ringing_gives_the_caller_487(sipp_bin: str, proxy: Proxy) -> None:
    two_party_call(sipp_bin, proxy, "uas_ring.xml", "call_uac_cancel.xml")


def test_the_callee_hangs_up(sipp_bin: str, proxy: Proxy) -> None:
    two_party_call(sipp_bin, proxy, "uas_bye.xml", "call_uac_callee_bye.xml")


def test_reinvite_in_the_dialog(sipp_bin: str, proxy: Proxy) -> None:
    two_party_call(sipp_bin, proxy, "uas.xml", "call_uac_reinvite.xml")


FLOOD_USERS = 2000
FLOOD_RATE = 500


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_register_flood_of_unique_users_is_all_stored(
    sipp_bin: str, start_proxy: StartProxy, backend: str, request: pytest.FixtureRequest
) -> None:
    phones = numbered_phones(FLOOD_USERS)
    # sipp is one source sending 1000 REGISTERs a second: over any phone's flood limit.
    unlimited = {"SIPLINE_LIMITS__FLOOD_DENSITY": "0"}
    proxy = start_proxy(request.getfixturevalue(f"{backend}_url"), phones, **unlimited)
    stats = register(sipp_bin, proxy, phones, rate=FLOOD_RATE)
    assert stats["SuccessfulCall(C)"] == str(FLOOD_USERS)
    assert stats["FailedCall(C)"] == "0"
    stored = bindings(proxy.url)
    assert len(stored) == FLOOD_USERS
    assert {aor for aor, *_ in stored} == {phone.aor for phone in phones}


def test_sigterm_drains_and_keeps_every_binding(sipp_bin: str, proxy: Proxy) -> None:
    register(sipp_bin, proxy, [ALICE, BOB])
    assert proxy.stop() == 0, proxy.log_text()
    assert [aor for aor, *_ in bindings(proxy.url)] == ["alice@example.com", "bob@example.com"]


def test_a_new_sqlite_database_is_migrated_at_start(start_proxy: StartProxy, sqlite_url: str) -> None:
    proxy = start_proxy(sqlite_url, None)

    async def missing() -> list[int]:
        db = await open_database(proxy.url)
        try:
            return await pending(db)
        finally:
            await db.close()

    assert asyncio.run(missing()) == []


def test_an_outdated_mysql_schema_is_refused_with_advice(mysql_url: str) -> None:
    done = subprocess.run(
        proxy_command(), cwd=REPO, env=proxy_env(free_port(), mysql_url),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "schema is not up to date" in done.stderr
    assert "run `sipline db migrate` first" in done.stderr
    assert "Traceback" not in done.stderr

"""``sipline carrier|rates|did|profile|cdr ...`` as an operator runs them, on SQLite and MariaDB.

Most tests run the commands in process (the same parser and handlers as the
console script, faster); the rates import also runs as the installed script,
progress bar, exit status and all.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sysconfig
from pathlib import Path

import orjson
import pytest

from acr.health import open_health
from sipline.carriers.model import Cdr
from sipline.carriers.store import CDR_COLUMNS, cdr_row
from sipline.cli import build_parser
from sipline.config import Settings
from sipline.storage import migrate, open_database

REPO = Path(__file__).resolve().parents[2]
SIPLINE = Path(sysconfig.get_path("scripts")) / "sipline"


@pytest.fixture
def settings(database_url: str) -> Settings:
    async def prepare() -> None:
        db = await open_database(database_url)
        await migrate(db)
        await db.close()

    asyncio.run(prepare())
    return Settings(database={"url": database_url})  # type: ignore[arg-type]


def run(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args, settings)


def ok(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = run(settings, *argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def fails(settings: Settings, capsys: pytest.CaptureFixture[str], status: int, *argv: str) -> str:
    assert run(settings, *argv) == status
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return err


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_carrier_add_list_disable_enable(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ok(settings, capsys, "carrier", "add", "cheap", "--gateway", "127.0.0.1:5090",
             "--gateway", "192.0.2.7:5060;transport=tcp;weight=3", "--capacity", "100",
             "--cps", "10")  # fmt: skip
    assert out == "added carrier cheap (127.0.0.1:5090, 192.0.2.7:5060)\n"
    ok(settings, capsys, "carrier", "add", "backup", "--gateway", "127.0.0.1:5091")
    *listing, note = ok(settings, capsys, "carrier", "list").splitlines()
    assert table("\n".join(listing)) == [
        ["CARRIER", "STATE", "CAPACITY", "CPS", "RATES", "GATEWAY", "WEIGHT", "STATUS"],
        ["backup", "enabled", "-", "-", "0", "127.0.0.1:5091/udp", "1", "-"],
        ["cheap", "enabled", "100", "10", "0", "192.0.2.7:5060/tcp", "3", "-"],
        ["127.0.0.1:5090/udp", "1", "-"],
    ]
    # No Redis and no ACR node to ask: nothing live is known, and it says so.
    assert note == "gateway status: no live data (no ACR node is running)"
    assert ok(settings, capsys, "carrier", "disable", "cheap") == "disabled carrier cheap\n"
    assert table(ok(settings, capsys, "carrier", "list"))[2][1] == "disabled"
    assert ok(settings, capsys, "carrier", "enable", "cheap") == "enabled carrier cheap\n"
    assert table(ok(settings, capsys, "carrier", "list"))[2][1] == "enabled"


def test_carrier_list_shows_the_shared_health_of_each_gateway(
    settings: Settings, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    ok(settings, capsys, "carrier", "add", "a", "--gateway", "127.0.0.1:5090",
       "--gateway", "127.0.0.1:5092")  # fmt: skip
    ok(settings, capsys, "carrier", "add", "b", "--gateway", "127.0.0.1:5091")

    async def probe() -> None:  # what an ACR node's prober records
        health = open_health(redis_url, failures=1, successes=1, node="primary")
        health.probe_result("127.0.0.1:5090", False, 1000.0)
        health.probe_result("127.0.0.1:5091", True, 1000.0)
        await health.close()

    asyncio.run(probe())
    shared = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": redis_url})}
    )
    statuses = {row[-3]: row[-1] for row in table(ok(shared, capsys, "carrier", "list"))[1:]}
    assert statuses == {
        "127.0.0.1:5090/udp": "down",
        "127.0.0.1:5092/udp": "unknown",
        "127.0.0.1:5091/udp": "up",
    }


def test_carrier_list_says_there_is_no_live_data_when_redis_is_away(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(settings, capsys, "carrier", "add", "a", "--gateway", "127.0.0.1:5090")
    away = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"})}
    )
    *listing, note = ok(away, capsys, "carrier", "list").splitlines()
    assert table("\n".join(listing))[1][-1] == "-"
    assert note.startswith("gateway status: no live data (Redis unreachable")


def test_carrier_mistakes_are_refused(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(settings, capsys, "carrier", "add", "a", "--gateway", "127.0.0.1:5090")
    err = fails(settings, capsys, 1, "carrier", "add", "a", "--gateway", "127.0.0.1:5099")
    assert "sipline: carrier a already exists" in err
    err = fails(settings, capsys, 1, "carrier", "add", "b", "--gateway", "127.0.0.1:5090")
    assert "gateway 127.0.0.1:5090 belongs to carrier a" in err
    err = fails(settings, capsys, 2, "carrier", "add", "c", "--gateway", "127.0.0.1:99999")
    assert "bad address '127.0.0.1:99999'" in err
    err = fails(settings, capsys, 2, "carrier", "add", "c", "--gateway", "127.0.0.1:5093;weight=0")
    assert "bad gateway parameter 'weight=0'" in err
    err = fails(settings, capsys, 2, "carrier", "add", "c d", "--gateway", "127.0.0.1:5093")
    assert "bad carrier name 'c d'" in err
    assert "no carrier ghost" in fails(settings, capsys, 1, "carrier", "disable", "ghost")


def test_did_add_and_list(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(settings, capsys, "did", "add", "+442071234567", "--proxy", "127.0.0.1:5060",
             "--backup", "127.0.0.1:5062")  # fmt: skip
    assert out == "added DID 442071234567 -> 127.0.0.1:5060 (backup 127.0.0.1:5062)\n"
    ok(settings, capsys, "did", "add", "442071234568", "--proxy", "127.0.0.1:5060", "--account", "ACME")
    assert table(ok(settings, capsys, "did", "list")) == [
        ["NUMBER", "PROXY", "BACKUPS", "ACCOUNT"],
        ["442071234567", "127.0.0.1:5060", "127.0.0.1:5062", "-"],
        ["442071234568", "127.0.0.1:5060", "-", "ACME"],
    ]
    err = fails(settings, capsys, 1, "did", "add", "442071234567", "--proxy", "127.0.0.1:5070")
    assert "DID 442071234567 already exists" in err
    err = fails(settings, capsys, 2, "did", "add", "44-20", "--proxy", "127.0.0.1:5070")
    assert "bad number '44-20'" in err


def test_profile_set_and_list(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    ok(settings, capsys, "profile", "set", "default")
    ok(settings, capsys, "profile", "set", "+44", "--price", "0.8", "--quality", "0.1",
       "--availability", "0.1", "--max-price", "0.05", "--final-codes", "486,603",
       "--attempts", "2")  # fmt: skip
    assert table(ok(settings, capsys, "profile", "list"))[1:] == [
        ["default", "0.4", "0.3", "0.3", "-", "-", "404,484,486,487,600,603", "3"],
        ["44", "0.1", "0.1", "0.8", "-", "0.05", "486,603", "2"],
    ]
    err = fails(settings, capsys, 2, "profile", "set", "44", "--final-codes", "486,busy")
    assert "bad --final-codes" in err


def test_rates_import_in_process(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ok(settings, capsys, "carrier", "add", "acme", "--gateway", "127.0.0.1:5090")
    deck = tmp_path / "acme.csv"
    deck.write_text(
        "prefix,rate,connect_fee,first_increment,next_increment\n44,0.01,0,6,6\n33,0.02,,,\n"
    )
    out = ok(settings, capsys, "rates", "import", str(deck), "--carrier", "acme", "--quiet")
    assert out.startswith("loaded 2 rates for acme in ")
    assert table(ok(settings, capsys, "carrier", "list"))[1][4] == "2"
    err = fails(settings, capsys, 1, "rates", "import", str(deck), "--carrier", "ghost", "--quiet")
    assert "no carrier ghost" in err
    err = fails(
        settings, capsys, 2, "rates", "import", str(tmp_path / "none.csv"), "--carrier", "acme"
    )
    assert "no deck file" in err


def _cdr(n: int) -> Cdr:
    return Cdr(
        call_id=f"call-{n}", account="ACME", caller="alice", callee="442071234567",
        prefix="4420", carrier="acme", gateway="127.0.0.1:5090", rate=0.6,
        start=1_700_000_000.0 + n, end=1_700_000_070.0 + n, final_code=200, node="primary",
        answer=1_700_000_003.0 + n, first_increment=6, next_increment=6, billed_seconds=72,
        cost=0.72,
    )  # fmt: skip


def test_cdr_list_as_a_table_and_as_json(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async def write() -> None:
        db = await open_database(settings.database.url)
        await db.executemany(
            f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({', '.join('?' * 19)})",
            [cdr_row(_cdr(n)) for n in range(4)] + [cdr_row(late)],
        )
        await db.close()

    late = _cdr(4)
    late.extra = {"answer": "late"}  # answered after the ACR gave up: billed apart
    asyncio.run(write())
    rows = table(ok(settings, capsys, "cdr", "list", "--last", "2"))
    assert rows[0][:3] == ["START", "CALL-ID", "CALLER"]
    assert [row[1] for row in rows[1:]] == ["call-3", "call-4"]
    assert rows[1][0] == "2023-11-14T22:13:23Z" and rows[1][-4:] == [
        "72s",
        "0.6",
        "0.720000",
        "primary",
    ]
    assert rows[2][-2:] == ["primary", "answer=late"]
    listed = orjson.loads(ok(settings, capsys, "cdr", "list", "--json"))
    assert [c["call_id"] for c in listed] == [f"call-{n}" for n in range(5)]
    assert listed[0]["cost"] == 0.72 and listed[0]["answer"] == 1_700_000_003.0


# -- the installed script ----------------------------------------------------------------------


def sipline(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    env = clean | {"SIPLINE_DATABASE__URL": url, "COLUMNS": "100"}
    return subprocess.run(
        [str(SIPLINE), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_rates_import_as_the_operator_runs_it(database_url: str, tmp_path: Path) -> None:
    assert sipline(database_url, "db", "migrate").returncode == 0
    added = sipline(database_url, "carrier", "add", "acme", "--gateway", "127.0.0.1:5090")
    assert added.returncode == 0, added.stderr
    deck = tmp_path / "acme.csv"
    deck.write_text("".join(f"{44_000_000 + n},0.0{n % 10}\n" for n in range(60_000)))
    done = sipline(database_url, "rates", "import", str(deck), "--carrier", "acme")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("loaded 60000 rates for acme in ")
    assert "checking acme.csv" in done.stderr and "loading acme" in done.stderr  # the bar

    deck.write_text("44,0.01\n45,0.01\n46,oops\n")
    refused = sipline(database_url, "rates", "import", str(deck), "--carrier", "acme", "--quiet")
    assert refused.returncode == 2
    assert f"{deck}: 1 bad row(s), nothing loaded:\n  line 3: bad rate 'oops'" in refused.stderr
    assert "Traceback" not in refused.stderr
    listing = sipline(database_url, "carrier", "list")
    assert listing.stdout.splitlines()[1].split()[4] == "60000"  # the old deck stands


def test_cdr_errors_lists_what_the_database_refused(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async def refuse() -> None:
        db = await open_database(settings.database.url)
        await db.execute(
            "INSERT INTO error_queue (source, reason, payload, created_at) VALUES (?, ?, ?, ?)",
            (
                "cdrs",
                "INSERT cdrs failed: too long",
                orjson.dumps({"call_id": "c-9"}).decode(),
                1.0,
            ),
        )
        await db.close()

    asyncio.run(refuse())
    assert table(ok(settings, capsys, "cdr", "errors")) == [
        ["CALL-ID", "REASON"],
        ["c-9", "INSERT", "cdrs", "failed:", "too", "long"],
    ]
    assert orjson.loads(ok(settings, capsys, "cdr", "errors", "--json")) == [
        {"reason": "INSERT cdrs failed: too long", "cdr": {"call_id": "c-9"}}
    ]


def test_gateway_views_of_several_nodes_merge_to_the_newest_verdict() -> None:
    from sipline.cluster.live import merge_gateways

    primary = {"gateways": {"a": {"status": "up", "changed": 10.0},
                            "b": {"status": "down", "changed": 30.0},
                            "c": {"status": "backoff", "changed": 5.0}}}  # fmt: skip
    secondary = {"gateways": {"a": {"status": "down", "changed": 20.0},
                              "b": {"status": "up", "changed": 25.0},
                              "c": {"status": "up", "changed": 50.0},
                              "d": "garbage", "e": {"status": "up", "changed": "x"}}}  # fmt: skip
    assert merge_gateways([primary, secondary, None, []]) == {
        "a": "down", "b": "down", "c": "backoff"
    }  # fmt: skip

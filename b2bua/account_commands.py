"""``sipline account set|list|audit``: account licences (concurrent calls) and their grace.

Registered through the ``sipline.commands`` entry-point group. The rules the
B2BUA applies are in ``sipline.grace``; a change is pushed to the nodes
(sipline.cluster.changes), which apply it at once.
"""

from __future__ import annotations

import argparse
import logging
import time

from sipline import logs
from sipline.cluster import live
from sipline.cluster.changes import announce
from sipline.config import Settings
from sipline.grace import Licence
from sipline.storage import Database
from sipline.storage.accounts import KEEP, Account, Accounts, AuditRow
from sipline.storage.commands import run_with_database

log = logging.getLogger(__name__)

SET_HELP = """\
Create an account or change it. A licence is a number of concurrent calls.
The first call over it starts the account's grace period, during which calls
over the licence still go ahead (each is audited); after it they are refused
with 403 Licence Exceeded. Going back under the licence does not end the
period: it starts afresh only when this command is run for the account
(which is what raising the licence does), unless --keep-grace is given (to
lengthen or shorten the current period with --grace-hours).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("account", help="account licences (concurrent calls)")
    actions = parser.add_subparsers(dest="account_command", metavar="ACTION", required=True)

    put = actions.add_parser(
        "set",
        help="create or change an account's licence; starts a fresh grace period",
        description=SET_HELP,
    )
    put.add_argument(
        "name", metavar="NAME", help="the account (subscribers name it with --account)"
    )
    put.add_argument(
        "--licence", type=_count, help="concurrent calls licensed (required for a new account)"
    )
    put.add_argument(
        "--grace-hours",
        type=_hours,
        default=KEEP,
        metavar="H",
        help="hours over the licence are tolerated from the first call over it; 0: none;"
        " 'default': the config's b2bua.grace_hours (the default for a new account)",
    )
    put.add_argument(
        "--keep-grace",
        action="store_true",
        help="keep the current grace period's start instead of starting afresh",
    )
    put.set_defaults(func=cmd_set)

    listing = actions.add_parser(
        "list", help="accounts: licence, grace state, current calls (from the B2BUAs)"
    )
    listing.set_defaults(func=cmd_list)

    audit = actions.add_parser("audit", help="the latest calls over their licence, newest first")
    audit.add_argument("name", metavar="NAME", nargs="?", help="only this account")
    audit.add_argument("--limit", type=_count, default=50, help="at most this many (50)")
    audit.set_defaults(func=cmd_audit)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, not {text!r}")
    return int(text)


def _hours(text: str) -> int | None:
    return None if text == "default" else _count(text)


def cmd_set(args: argparse.Namespace, settings: Settings) -> int:
    async def put(db: Database) -> int:
        account = await Accounts(db).set(
            args.name, args.licence, grace_hours=args.grace_hours, keep_grace=args.keep_grace
        )
        hours = _grace(account, settings)
        logs.event(
            log, "account_set", account=account.name, licence=account.licence, grace_hours=hours
        )
        print(f"{account.name}: licence {account.licence}, grace {hours} h")
        await announce(settings, db, "accounts", (account.name,))
        return 0

    return run_with_database(settings, put)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        accounts = await Accounts(db).list()
        calls, note = await _current_calls(settings, db, [a.name for a in accounts])
        print(format_accounts(accounts, settings, calls, time.time()))
        if note:
            print(f"calls: {note}")
        return 0

    return run_with_database(settings, show)


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        print(format_audit(await Accounts(db).audit(args.name, args.limit)))
        return 0

    return run_with_database(settings, show)


async def _current_calls(
    settings: Settings, db: Database, names: list[str]
) -> tuple[dict[str, int] | None, str]:
    """Every account's calls up across the B2BUA nodes, or None and why not: from the
    counters the nodes share in Redis, or without Redis from each running B2BUA (the
    counts are in its memory then), added up."""
    if not settings.redis.url:
        return await live.account_calls(db, names, shared=False)
    from sipline.storage.live import open_redis

    from .licences import shared_counts

    client = open_redis(settings.redis.url)
    try:
        return await shared_counts(client, names, time.time()), ""
    except Exception as exc:  # the list is still worth showing
        logs.event(log, "calls_unknown", logging.WARNING, error=repr(exc))
        return None, f"no live data (Redis unreachable: {exc})"
    finally:
        await client.aclose()


def _grace(account: Account, settings: Settings) -> int:
    return settings.b2bua.grace_hours if account.grace_hours is None else account.grace_hours


def format_accounts(
    accounts: list[Account], settings: Settings, calls: dict[str, int] | None, now: float
) -> str:
    rows = [("ACCOUNT", "LICENCE", "GRACE", "STATE", "CALLS")]
    for account in accounts:
        hours = _grace(account, settings)
        licence = Licence(account.name, account.licence, hours, account.grace_started_at)
        grace = f"{hours} h" + (" (default)" if account.grace_hours is None else "")
        state = licence.state(now)
        if state == "grace":
            state = f"in grace until {_utc(licence.grace_ends_at or now)}"
        elif state == "enforced":
            state = f"enforced since {_utc(licence.grace_ends_at or now)}"
        current = "-" if calls is None else str(calls.get(account.name, 0))
        rows.append((account.name, str(account.licence), grace, state, current))
    return _table(rows)


def format_audit(rows: list[AuditRow]) -> str:
    table = [("TIME", "ACCOUNT", "CALLS", "LICENCE", "OUTCOME", "NODE", "CALL-ID")]
    for r in rows:
        outcome = "allowed (grace)" if r.allowed else "refused"
        table.append(
            (_utc(r.at), r.account, str(r.count), str(r.licence), outcome, r.node, r.call_id or "-")
        )
    return _table(table)


def _table(rows: list[tuple[str, ...]]) -> str:
    """Aligned columns; the last one is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = (
        "".join(f"{cell:<{w}}  " for cell, w in zip(row[:-1], widths, strict=True)) + row[-1]
        for row in rows
    )
    return "\n".join(line.rstrip() for line in lines)


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))

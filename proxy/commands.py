"""The proxy's commands: ``sipline proxy`` (run it) and ``sipline subscriber add|list|remove``.

Registered through the ``sipline.commands`` entry-point group. The password
is turned into digest HA1s at once and never stored, printed or logged; the
HA1s are not shown either.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from sipline import logs
from sipline.config import Settings
from sipline.storage import Database, Subscriber, Subscribers, parse_aor
from sipline.storage.commands import run_node, run_with_database

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = subparsers.add_parser(
        "proxy", help="run the edge proxy and registrar; SIGTERM or SIGINT drains and stops it"
    )
    proxy.set_defaults(func=cmd_proxy)
    parser = subparsers.add_parser("subscriber", help="provision SIP subscribers")
    actions = parser.add_subparsers(dest="subscriber_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a subscriber (user@domain, realm = domain)")
    add.add_argument("aor", metavar="AOR", help="address of record, such as alice@example.com")
    secret = add.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password", help="the SIP password (visible to ps; see --password-stdin)")
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    add.add_argument("--account", help="the account the subscriber's calls count against")
    add.set_defaults(func=cmd_add)

    listing = actions.add_parser("list", help="list subscribers (never their HA1)")
    listing.set_defaults(func=cmd_list)

    remove = actions.add_parser("remove", help="remove a subscriber")
    remove.add_argument("aor", metavar="AOR", help="address of record, such as alice@example.com")
    remove.set_defaults(func=cmd_remove)


def cmd_proxy(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that provisioning commands do not pay for the event loop.
    from proxy.server import serve_proxy

    return run_node(serve_proxy(settings))


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else args.password

    async def add(db: Database) -> int:
        subscriber = await Subscribers(db).add(args.aor, password, account=args.account)
        logs.event(log, "subscriber_added", aor=subscriber.aor, account=subscriber.account or "-")
        print(f"added {subscriber.aor}")
        return 0

    return run_with_database(settings, add)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        print(format_table(await Subscribers(db).list()))
        return 0

    return run_with_database(settings, show)


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    async def remove(db: Database) -> int:
        await Subscribers(db).remove(args.aor)
        aor = "@".join(parse_aor(args.aor))
        logs.event(log, "subscriber_removed", aor=aor)
        print(f"removed {aor}")
        return 0

    return run_with_database(settings, remove)


def format_table(subscribers: list[Subscriber]) -> str:
    """AOR, account and creation time (UTC), in aligned columns under a header."""
    rows = [("AOR", "ACCOUNT", "CREATED")]
    rows += [(s.aor, s.account or "-", _utc(s.created_at)) for s in subscribers]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{aor:<{widths[0]}}  {account:<{widths[1]}}  {created}" for aor, account, created in rows
    )


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))

"""The proxy's commands: ``sipline proxy`` (run it), ``sipline subscriber
add|list|remove|aliases|password`` and ``sipline registrations [AOR]`` (the live bindings
of every proxy, as stored).

Registered through the ``sipline.commands`` entry-point group. The password
is turned into digest HA1s at once and never stored, printed or logged; the
HA1s are not shown either.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING

import orjson

from sipline import logs
from sipline.cluster.changes import announce
from sipline.config import Settings
from sipline.net import workers
from sipline.net.workers import Workers
from sipline.storage import Database, Subscriber, Subscribers, parse_aor
from sipline.storage.commands import (
    given_password,
    password_options,
    run_node,
    run_with_database,
    table,
)
from sipline.storage.subscribers import check_alias

if TYPE_CHECKING:
    from proxy.location import Binding

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = subparsers.add_parser(
        "proxy",
        help="run the edge proxy and registrar ([node] workers processes); SIGTERM or SIGINT"
        " drains and stops it",
    )
    # Given by the supervisor to the workers it starts (sipline.net.supervisor).
    proxy.add_argument("--worker", type=Workers.parse, help=argparse.SUPPRESS)
    proxy.set_defaults(func=cmd_proxy)
    parser = subparsers.add_parser("subscriber", help="provision SIP subscribers")
    actions = parser.add_subparsers(dest="subscriber_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a subscriber (user@domain, realm = domain)")
    add.add_argument("aor", metavar="AOR", help="address of record, such as alice@example.com")
    password_options(add)
    add.add_argument("--account", help="the account the subscriber's calls count against")
    add.add_argument(
        "--alias", action="append", default=[], metavar="ALIAS",
        help="another identity its From may use: a user part in its domain (15550100),"
        " user@domain or a number (repeat for several)",
    )  # fmt: skip
    add.set_defaults(func=cmd_add)

    aliases = actions.add_parser(
        "aliases",
        help="set what else a subscriber's From may say (none: only its own AOR)",
    )
    aliases.add_argument("aor", metavar="AOR", help="address of record, such as alice@example.com")
    aliases.add_argument("aliases", metavar="ALIAS", nargs="*", help="the new aliases (none: clear)")
    aliases.set_defaults(func=cmd_aliases)

    password = actions.add_parser(
        "password", help="set a subscriber's password (its HA1s are replaced; nothing else kept)"
    )
    password.add_argument("aor", metavar="AOR", help="address of record, such as alice@example.com")
    password_options(password)
    password.set_defaults(func=cmd_password)

    listing = actions.add_parser("list", help="list subscribers (never their HA1)")
    listing.set_defaults(func=cmd_list)

    remove = actions.add_parser("remove", help="remove a subscriber")
    remove.add_argument("aor", metavar="AOR", help="address of record, such as alice@example.com")
    remove.set_defaults(func=cmd_remove)

    registrations = subparsers.add_parser(
        "registrations",
        help="the live bindings of every proxy (contact, received address, transport, node,"
        " expiry, user agent), from the locations table",
    )
    registrations.add_argument("aor", metavar="AOR", nargs="?", help="only this address of record")
    registrations.add_argument("--json", action="store_true", help="one JSON array of bindings")
    registrations.set_defaults(func=cmd_registrations)


def cmd_proxy(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that provisioning commands do not pay for the event loop.
    from proxy.server import serve_proxy, supervise_proxy

    if args.worker is not None:
        return run_node(serve_proxy(settings, args.worker))
    workers.check(settings)  # ConfigError naming node.workers
    count = workers.count(settings)
    if count > 1:
        return run_node(supervise_proxy(settings, count))
    return run_node(serve_proxy(settings))


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    password = given_password(args) or ""

    async def add(db: Database) -> int:
        subscribers = Subscribers(db)
        for alias in args.alias:
            check_alias(alias)
        subscriber = await subscribers.add(args.aor, password, account=args.account)
        if args.alias:
            subscriber = await subscribers.set_aliases(subscriber.aor, args.alias)
        logs.event(log, "subscriber_added", aor=subscriber.aor, account=subscriber.account or "-")
        print(f"added {subscriber.aor}")
        await announce(settings, db, "subscribers", (subscriber.aor,))
        return 0

    return run_with_database(settings, add)


def cmd_password(args: argparse.Namespace, settings: Settings) -> int:
    password = given_password(args) or ""

    async def set_password(db: Database) -> int:
        subscriber = await Subscribers(db).set_password(args.aor, password)
        logs.event(log, "subscriber_password", aor=subscriber.aor)
        print(f"password of {subscriber.aor} set")
        await announce(settings, db, "subscribers", (subscriber.aor,))
        return 0

    return run_with_database(settings, set_password)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        print(format_table(await Subscribers(db).list()))
        return 0

    return run_with_database(settings, show)


def cmd_aliases(args: argparse.Namespace, settings: Settings) -> int:
    async def set_aliases(db: Database) -> int:
        subscriber = await Subscribers(db).set_aliases(args.aor, args.aliases)
        shown = " ".join(sorted(subscriber.aliases)) or "-"
        logs.event(log, "subscriber_aliases", aor=subscriber.aor, aliases=shown)
        print(f"{subscriber.aor} aliases: {shown}")
        await announce(settings, db, "subscribers", (subscriber.aor,))
        return 0

    return run_with_database(settings, set_aliases)


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    async def remove(db: Database) -> int:
        await Subscribers(db).remove(args.aor)
        aor = "@".join(parse_aor(args.aor))
        logs.event(log, "subscriber_removed", aor=aor)
        print(f"removed {aor}")
        await announce(settings, db, "subscribers", (aor,))
        return 0

    return run_with_database(settings, remove)


def cmd_registrations(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        from proxy.location_store import LocationStore

        aor = "@".join(parse_aor(args.aor)) if args.aor else None
        now = time.time()
        bindings = await LocationStore(db, "").load(now, aor)
        if args.json:
            rows = [_binding_json(b, now) for b in bindings]
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif bindings:
            print(format_bindings(bindings, now))
        else:
            print(f"no live binding{' of ' + aor if aor else ''}")
        return 0

    return run_with_database(settings, show)


def format_bindings(bindings: list[Binding], now: float) -> str:
    rows = [("AOR", "CONTACT", "RECEIVED", "TRANSPORT", "NODE", "EXPIRES", "USER-AGENT")]
    for b in bindings:
        source = b.source
        rows.append(
            (b.aor, b.contact, source.hostport if source else "-",
             source.transport if source else "-", b.node or "-",
             f"{_utc(b.expires_at)} (in {b.expires_in(now)} s)", b.user_agent or "-")
        )  # fmt: skip
    return table(rows)


def _binding_json(b: Binding, now: float) -> dict[str, object]:
    source = b.source
    return {
        "aor": b.aor, "contact": b.contact,
        "received": source.hostport if source else None,
        "transport": source.transport if source else None, "node": b.node,
        "expires_at": b.expires_at, "expires_in": b.expires_in(now),
        "user_agent": b.user_agent, "nat": b.nat,
    }  # fmt: skip


def format_table(subscribers: list[Subscriber]) -> str:
    """AOR, account, creation time (UTC) and aliases, in aligned columns under a header."""
    rows = [("AOR", "ACCOUNT", "CREATED", "ALIASES")]
    rows += [
        (s.aor, s.account or "-", _utc(s.created_at), " ".join(sorted(s.aliases)) or "-")
        for s in subscribers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{aor:<{widths[0]}}  {account:<{widths[1]}}  {created:<{widths[2]}}  {aliases}".rstrip()
        for aor, account, created, aliases in rows
    )


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))

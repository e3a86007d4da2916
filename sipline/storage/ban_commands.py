"""``sipline ban list|add|remove``: the bans every SIP node applies.

The same store the nodes share (sipline.storage.bans): Redis when
``[redis] url`` is set (every node applies a change at once), else the
database (nodes apply it within ``[limits] ban_poll`` seconds). A ban made
here is permanent unless given ``--for``; it replaces any stored for that
address. An IPv6 address is banned by its ``[limits] ipv6_prefix``, as the
nodes count it.

Exit status: 0 done, 1 the store failed or there was no such ban, 2 a bad value.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable

from sipline import logs
from sipline.config import Settings
from sipline.storage.bans import (
    MANUAL,
    OPERATOR,
    Ban,
    BanStore,
    DatabaseBans,
    RedisBans,
    ban_address,
)
from sipline.storage.commands import (
    EXIT_STORAGE_ERROR,
    run_command,
    run_with_database,
    table,
    utc,
)
from sipline.storage.database import Database, StorageError
from sipline.storage.live import redis_errors

log = logging.getLogger("sipline.ban")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ban", help="list, add or remove bans of source addresses (every SIP node drops them)"
    )
    actions = parser.add_subparsers(dest="ban_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="bans in force, by nodes (flood, auth) or by hand")
    listing.set_defaults(func=cmd_list)
    add = actions.add_parser("add", help="ban an address until removed, or --for a time")
    add.add_argument("address", metavar="ADDRESS", help="an IPv4 or IPv6 address, or IPv6 prefix")
    add.add_argument(
        "--for", dest="seconds", type=duration, metavar="DURATION",
        help="how long: 90, 90s, 15m, 12h, 7d (default: until removed)",
    )  # fmt: skip
    add.set_defaults(func=cmd_add)
    remove = actions.add_parser("remove", help="lift the ban of an address")
    remove.add_argument("address", metavar="ADDRESS")
    remove.set_defaults(func=cmd_remove)


def duration(text: str) -> float:
    """Seconds of ``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: expected such as 90s, 15m, 12h, 7d")
    return float(match.group(1)) * _UNIT[match.group(2)]


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(store: BanStore) -> int:
        print(format_bans(await store.active(time.time())))
        return 0

    return run_with_bans(settings, show)


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    async def add(store: BanStore) -> int:
        address = ban_address(args.address, settings.limits.ipv6_prefix)
        now = time.time()
        ends = None if args.seconds is None else now + args.seconds
        await store.add([Ban(address, ends, MANUAL, OPERATOR, now)], replace=True)
        until = "removed" if ends is None else utc(ends)
        logs.event(log, "ban_added", ip=address, until=until)
        print(f"banned {address} until {until}")
        return 0

    return run_with_bans(settings, add)


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    async def remove(store: BanStore) -> int:
        address = ban_address(args.address, settings.limits.ipv6_prefix)
        if not await store.remove(address):
            print(f"sipline: {address} is not banned", file=sys.stderr)
            return EXIT_STORAGE_ERROR
        logs.event(log, "ban_removed", ip=address)
        print(f"removed the ban of {address}")
        return 0

    return run_with_bans(settings, remove)


def run_with_bans(settings: Settings, work: Callable[[BanStore], Awaitable[int]]) -> int:
    """Run ``work`` on the store the nodes share; failures become a message and a status."""
    url = settings.redis.url
    if not url:

        async def on_database(db: Database) -> int:
            return await work(DatabaseBans(db))

        return run_with_database(settings, on_database)

    async def on_redis() -> int:
        store = RedisBans(url)
        try:
            return await work(store)
        except redis_errors() as exc:
            raise StorageError(f"redis.url: Redis failed: {exc}") from None
        finally:
            await store.close()

    return run_command(on_redis())


def format_bans(bans: list[Ban]) -> str:
    rows = [("ADDRESS", "REASON", "BY", "SINCE", "UNTIL")]
    rows += [
        (b.address, b.reason, b.origin, utc(b.created_at),
         "removed" if b.ends_at is None else utc(b.ends_at))
        for b in bans
    ]  # fmt: skip
    return table(rows)

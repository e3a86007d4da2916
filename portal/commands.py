"""``sipline portal`` (run the web portal) and ``sipline portal-user add|list|remove|password``.

Registered through the ``sipline.commands`` entry-point group. Passwords are
hashed with argon2id at once, never printed nor logged; each change is written
to the portal's audit log as made by ``cli``.
"""

from __future__ import annotations

import argparse
import getpass
import logging

from portal.audit import record
from portal.users import ROLES, Users
from sipline import logs
from sipline.config import Settings
from sipline.storage import Database
from sipline.storage.commands import (
    given_password,
    password_options,
    run_node,
    run_with_database,
    table,
    utc,
)

log = logging.getLogger("sipline.portal")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    portal = subparsers.add_parser(
        "portal", help="run the web portal on [portal] listen (127.0.0.1:8080)"
    )
    portal.set_defaults(func=cmd_portal)
    users = subparsers.add_parser("portal-user", help="who may log in to the portal")
    actions = users.add_subparsers(dest="portal_user_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a portal user")
    add.add_argument("username", metavar="NAME")
    add.add_argument("--role", choices=ROLES, required=True,
                     help="admin: every account; customer: one account (--account)")  # fmt: skip
    add.add_argument("--account", help="the account a customer user sees")
    password_options(add, required=False)
    add.set_defaults(func=cmd_add)
    password = actions.add_parser("password", help="set a portal user's password")
    password.add_argument("username", metavar="NAME")
    password_options(password, required=False)
    password.set_defaults(func=cmd_password)
    listing = actions.add_parser("list", help="portal users (never their hashes)")
    listing.set_defaults(func=cmd_list)
    remove = actions.add_parser("remove", help="remove a portal user")
    remove.add_argument("username", metavar="NAME")
    remove.set_defaults(func=cmd_remove)


def _password(args: argparse.Namespace) -> str:
    given = given_password(args)
    return given if given is not None else getpass.getpass("password: ")


def cmd_portal(args: argparse.Namespace, settings: Settings) -> int:
    from portal.server import serve_portal

    return run_node(serve_portal(settings))


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    password = _password(args)

    async def add(db: Database) -> int:
        user = await Users(db).add(args.username, password, args.role, args.account)
        await record(db, username="cli", account=user.account, source="cli",
                     action="portal_user_add", target=user.username, after=user.to_json())  # fmt: skip
        logs.event(log, "portal_user_added", username=user.username, role=user.role)
        print(f"added portal user {user.username} ({user.role}"
              + (f", account {user.account})" if user.account else ")"))  # fmt: skip
        return 0

    return run_with_database(settings, add)


def cmd_password(args: argparse.Namespace, settings: Settings) -> int:
    password = _password(args)

    async def set_password(db: Database) -> int:
        await Users(db).set_password(args.username, password)
        await record(db, username="cli", account=None, source="cli",
                     action="portal_user_password", target=args.username)  # fmt: skip
        print(f"password of portal user {args.username} set")
        return 0

    return run_with_database(settings, set_password)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        rows = [("USER", "ROLE", "ACCOUNT", "CREATED")]
        rows += [(u.username, u.role, u.account or "-", utc(u.created_at))
                 for u in await Users(db).list()]  # fmt: skip
        print(table(rows))
        return 0

    return run_with_database(settings, show)


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    async def remove(db: Database) -> int:
        users = Users(db)
        user = await users.get(args.username)
        await users.remove(args.username)
        await record(db, username="cli", account=user.account if user else None, source="cli",
                     action="portal_user_remove", target=args.username,
                     before=user.to_json() if user else None)  # fmt: skip
        print(f"removed portal user {args.username}")
        return 0

    return run_with_database(settings, remove)

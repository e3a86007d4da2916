"""The B2BUA's command: ``sipline b2bua`` (run it).

Registered through the ``sipline.commands`` entry-point group.
"""

from __future__ import annotations

import argparse

from sipline.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b2bua = subparsers.add_parser(
        "b2bua",
        help="run the back-to-back user agent ([b2bua] host:port); SIGTERM or SIGINT drains and stops it",
    )
    b2bua.set_defaults(func=cmd_b2bua)


def cmd_b2bua(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that other commands do not pay for the event loop.
    from b2bua.server import serve_b2bua
    from sipline.storage.commands import run_node

    return run_node(serve_b2bua(settings))

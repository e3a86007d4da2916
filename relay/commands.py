"""The relay's command: ``sipline relay`` runs the STUN server (and, beside it, the RTP relay).

Registered through the ``sipline.commands`` entry-point group.
"""

from __future__ import annotations

import argparse
import sys

from sipline.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    relay = subparsers.add_parser(
        "relay", help="run the STUN server and media relay; SIGTERM or SIGINT stops it"
    )
    relay.set_defaults(func=cmd_relay)


def cmd_relay(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that other commands do not pay for the event loop.
    import uvloop

    from relay.server import serve_relay

    try:
        uvloop.run(serve_relay(settings))
    except OSError as exc:  # an address in use, or not ours
        print(f"sipline: relay: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0

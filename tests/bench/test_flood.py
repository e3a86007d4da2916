"""bench.flood's parts that need no proxy: the flood's datagrams and the report."""

from __future__ import annotations

import argparse
import socket

from bench.flood import MB, Figures, invite, report, send
from sipline.sip.message import Request, parse_message


def test_the_flood_is_unauthenticated_invites_of_their_own() -> None:
    first, second = (parse_message(invite(5060, ("127.0.0.1", 4000), n)) for n in (1, 2))
    assert isinstance(first, Request) and first.method == "INVITE"
    assert "proxy-authorization" not in first.headers
    assert first.call_id != second.call_id and first.via.branch != second.via.branch


def test_the_report_says_every_figure() -> None:
    figures = Figures(2000, 1999, 1, 3_000_000, 4000, 1, 5000, 60 * MB, 90 * MB, 62 * MB, 12.5)
    args = argparse.Namespace(cps=200, flood=10.0, flood_ports=200)
    assert report(figures, args).splitlines() == [
        "legitimate calls (200 cps from 127.0.0.2): attempted 2000, completed 1999 (99.95 %), failed 1",
        "flood from 127.0.0.1, 200 port(s) (10 s): sent 3000000 (300,000/s), answered 4000;"
        " dropped by the guard 5000; bans 1",
        "proxy RSS: before 60.0 MB, peak 90.0 MB, after 62.0 MB (+30.0 MB at peak); CPU 12.5 s",
    ]


def test_a_paced_flood_keeps_its_rate_over_its_ports() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sent, _ = send(sink.getsockname()[1], 0.5, 2000, 20)
    assert 800 <= sent <= 1000  # 2000/s for 0.5 s, never ahead of its pace

"""The ACR's router on the wire, with the real transaction layer and a real journal:
UDP sockets on 127.0.0.1 play the B2BUA and two carriers. The 200 reaches the B2BUA
only once the answer is on disk; a node stopped dead with a call up bills it when
the BYE comes to its restart; the B2BUA's deadline holds until it hears from us."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from acr.journal import Journal
from acr.router import PAST_DEADLINE, AcrRouter
from sipline.carriers.model import Carrier, Gateway
from sipline.config import Settings
from sipline.net.node import Node
from sipline.net.ports import free_port
from sipline.sip.dialog import Dialog
from sipline.sip.message import Request
from tests.acr.test_journal import kill, records
from tests.acr.test_router import Live, Table
from tests.proxy.phones import UdpPhone

NUMBER = "sip:+442071234567@127.0.0.1:{port}"


@dataclass
class Acr:
    port: int
    directory: Path
    carriers: list[Carrier]
    commit_ms: float
    router: AcrRouter | None = None
    node: Node | None = None
    journal: Journal | None = None
    live: Live = field(default_factory=Live)

    async def start(self) -> Acr:
        settings = Settings(
            node={"name": "primary", "drain_timeout": 0},
            auth={"secret": "a restarted node checks the Record-Route it signed"},
            sip={"host": "127.0.0.1", "port": self.port, "transports": ["udp"]},
            acr={"trusted": ["127.0.0.1"]},
        )
        self.journal = Journal(self.directory, commit_ms=self.commit_ms)
        calls = await self.journal.open()
        table = Table(self.carriers)
        self.router = AcrRouter(settings, "primary", table, self.live, self.journal, self.carriers)
        self.router.resume(calls)
        self.node = Node(settings, self.router)
        await self.node.start()
        return self

    async def killed(self) -> None:
        """Stopped dead: no drain, nothing more reaches the journal."""
        assert self.router is not None and self.node is not None and self.journal is not None
        self.router.close()
        await self.node.stop()
        await kill(self.journal)

    async def close(self) -> None:
        if self.node is not None and self.journal is not None and self.journal._executor:
            assert self.router is not None
            self.router.close()
            await self.node.stop()
            await self.journal.close()


@dataclass
class Wire:
    acr: Acr
    b2bua: UdpPhone
    cheap: UdpPhone
    dear: UdpPhone


@pytest.fixture
async def wire(tmp_path: Path) -> AsyncIterator[Callable[..., Wire]]:
    port = free_port()
    phones = [await UdpPhone.open(port) for _ in range(3)]
    b2bua, cheap, dear = phones
    carriers = [
        Carrier(name, (Gateway(name, "127.0.0.1", phone.port),))
        for name, phone in (("cheap", cheap), ("dear", dear))
    ]
    made: list[Acr] = []

    async def start(commit_ms: float = 1.0) -> Wire:
        acr = await Acr(port, tmp_path / "journal", carriers, commit_ms).start()
        made.append(acr)
        return Wire(acr, b2bua, cheap, dear)

    yield start  # type: ignore[misc]
    for acr in made:
        await acr.close()
    for phone in phones:
        phone.close()


async def next_request(phone: UdpPhone, method: str) -> Request:
    """The next ``method`` request the phone gets (an ACK or a retransmission passed over)."""
    while True:
        message = await phone.receive()
        if isinstance(message, Request) and message.method == method:
            return message


def invite(w: Wire, *extra: tuple[str, str]) -> Request:
    request = w.b2bua.new_request(
        "INVITE", NUMBER.format(port=w.acr.port), extra=(("X-Sipline-Account", "acme"), *extra)
    )
    w.b2bua.send(request)
    return request


def answers(directory: Path, kind: str) -> list[str]:
    return [r["cdr"]["call_id"] for r in records(directory) if r["k"] == kind]


async def test_the_200_reaches_the_b2bua_only_once_the_answer_is_on_disk(wire) -> None:
    w = await wire(commit_ms=50)  # a wide group commit: a 200 sent before it would show
    sent = invite(w)
    forwarded = await next_request(w.cheap, "INVITE")
    w.cheap.answer(forwarded, 200)
    await w.b2bua.response(200)
    assert answers(w.acr.directory, "a") == [sent.call_id]


async def test_a_node_stopped_dead_with_a_call_up_bills_it_at_the_bye_after_its_restart(
    wire,
) -> None:
    w = await wire()
    sent = invite(w)
    forwarded = await next_request(w.cheap, "INVITE")
    w.cheap.answer(forwarded, 200)
    response = await w.b2bua.response(200)
    dialog = Dialog.uac(sent, response)
    w.b2bua.ack(dialog, sent)
    answered = time.time()
    await w.acr.killed()

    restarted = await wire()
    assert list(restarted.acr.router.dialogs) == [sent.call_id]  # type: ignore[union-attr]
    await asyncio.sleep(0.2)
    w.b2bua.in_dialog(dialog, "BYE")  # routed to the ACR by its Record-Route
    bye = await next_request(w.cheap, "BYE")
    w.cheap.answer(bye, 200)
    await w.b2bua.response(200)
    [cdr] = [r["cdr"] for r in records(w.acr.directory) if r["k"] == "e"]
    assert cdr["call_id"] == sent.call_id and cdr["carrier"] == "cheap"
    assert cdr["answer"] == pytest.approx(answered, abs=0.5)
    assert cdr["end"] - cdr["answer"] >= 0.2 and cdr["billed_seconds"] == 6  # 6/6


async def test_an_invite_past_its_deadline_is_answered_408_and_no_carrier_hears_of_it(
    wire,
) -> None:
    w = await wire()
    invite(w, ("X-Sipline-Deadline", f"{time.time() - 0.01:.3f}"))
    response = await w.b2bua.response()
    assert (response.status, response.reason) == (408, PAST_DEADLINE)
    await w.cheap.silence()
    await w.dear.silence()


async def test_the_deadline_no_longer_holds_once_the_b2bua_has_heard_a_100(wire) -> None:
    w = await wire()
    invite(w, ("X-Sipline-Deadline", f"{time.time() + 0.3:.3f}"))
    forwarded = await next_request(w.cheap, "INVITE")
    await w.b2bua.response(100)  # the ACR was silent 200 ms: the B2BUA waits for it now
    await asyncio.sleep(0.4)  # past the deadline
    w.cheap.answer(forwarded, 503)
    second = await next_request(w.dear, "INVITE")  # the hunt goes on
    assert "x-sipline-deadline" not in second.headers
    w.dear.answer(second, 486)
    await w.b2bua.response(486)

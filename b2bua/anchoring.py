"""A call's SDP through the RTP relay: one callback for every ng offer and answer.

Four steps wait on the relay (``b2bua.media``): the caller's offer before the
B leg's INVITE goes out (``setup``), the far side's answer before it reaches
the caller (``answering``), and a new offer in the call and its answer
(``indialog``). Each hands its ng future here with the step to go on with;
that step gets the relay's SDP, or None when the relay failed, and the SDP
then goes on as it came (counted: ``media_errors``). A call need not wait
for a relay that does not answer: what passes through it is its own choice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sipline.logs import event

from .call import Call
from .calls import Calls
from .teardown import guarded

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

log = logging.getLogger("sipline.b2bua")

_FAILED = {"offer": "media_not_anchored", "answer": "media_answer_failed"}  # log events


def through_relay(
    calls: Calls,
    node: NodeLike,
    call: Call,
    command: str,
    future: asyncio.Future[bytes],
    step: Callable[..., None],
    *args: Any,
) -> None:
    """Go on with ``step(calls, node, call, sdp, *args)`` once the relay has done
    ng ``command`` ("offer" or "answer"): ``sdp`` is None when it failed."""
    future.add_done_callback(lambda done: _relayed(calls, node, call, command, done, step, args))


def _relayed(
    calls: Calls,
    node: NodeLike,
    call: Call,
    command: str,
    done: asyncio.Future[bytes],
    step: Callable[..., None],
    args: tuple[Any, ...],
) -> None:
    try:
        sdp: bytes | None = done.result()
    except Exception as exc:
        calls.counts["media_errors"] += 1
        event(log, _FAILED[command], logging.WARNING, call_id=call.call_id, error=exc)
        sdp = None
    guarded(calls, node, call, step, sdp, *args)

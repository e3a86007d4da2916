"""A node process's life, the same for every role: start, run until told to stop, drain."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from sipline.logs import event
from sipline.net.node import tune_gc
from sipline.net.signals import until_stopped

if TYPE_CHECKING:
    from sipline.cluster.member import Member


class Role(Protocol):
    """A role's node and what runs beside it (``ProxyNode``, ``AcrNode`` ...)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_stopped(role: Role, log: logging.Logger) -> None:
    """Start ``role``, make the GC rare (``tune_gc``), run until SIGTERM or SIGINT
    (logged, ``event=signal``), then stop it (it drains).

    A role with a ``member`` (sipline.cluster.member) has it opened first, so its
    admin endpoint shows it ``syncing`` while it loads, and closed last."""
    member: Member | None = getattr(role, "member", None)
    if member is not None:
        await member.open()
    try:
        await role.start()
        if member is not None:
            member.running()
        tune_gc()
        try:
            received = await until_stopped()
            event(log, "signal", signal=received.name if received is not None else "stop")
        finally:
            if member is not None:
                member.stopping()
            await role.stop()
    finally:
        if member is not None:
            await member.close()

"""The dashboard: the node status wall (as ``sipline status`` shows it), calls in
progress, calls per second, registrations, ASR/ACD per carrier over the last hour,
and the account's spend today; live over server-sent events.

What the nodes say is shared by every viewer for ``live_interval`` seconds
(``Portal.shared``): a hundred open dashboards ask the nodes as often as one does;
the spend and the carriers' figures come from the running totals (portal.rollup). A node that does not answer is
shown without figures (sipline.cluster.commands.gather), never with old ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from sse_starlette.sse import EventSourceResponse

from portal.calls import visible_calls
from portal.context import Held, Operator, Portal, PortalDep, Viewer, page, refuse
from portal.users import User
from sipline.cluster.commands import gather
from sipline.cluster.report import Report
from sipline.storage.locations import registered

router = APIRouter()
log = logging.getLogger("sipline.portal")
DAY = 86400.0


def _sum(reports: list[Report], role: str, figure: str) -> float | None:
    values = [getattr(r, figure) for r in reports if r.role == role]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


async def snapshot(portal: Portal, user: User) -> dict[str, Any]:
    now = time.time()
    account = None if user.admin else user.account
    rollup = await portal.totals()
    carriers = rollup.carriers(now, account) if rollup is not None else []
    today = None
    if rollup is not None:
        days = rollup.totals(now - now % DAY, account).values()
        today = {"calls": sum(t.calls for t in days), "cost": round(sum(t.cost for t in days), 6),
                 "billed_seconds": sum(t.billed_seconds for t in days)}  # fmt: skip
    data: dict[str, Any] = {
        "at": now,
        "registrations": await registered(portal.db, now, account),
        "today": today,  # None: the totals are still being summed at start
        "carriers": [
            {"carrier": c.carrier, "calls": c.calls, "asr": round(c.asr, 4),
             "acd": round(c.acd, 1)}  # fmt: skip
            for c in carriers
        ],
    }
    if not user.admin:
        found, _ = await visible_calls(portal, user)
        data["calls"] = len(found)
    if user.admin:
        reports = await portal.shared.get("status", lambda: gather(portal.settings, portal.db))
        data["nodes"] = [r.to_json() for r in sorted(reports, key=lambda r: (r.role, r.name))]
        data["calls"] = _sum(reports, "b2bua", "calls")
        data["cps"] = _sum(reports, "b2bua", "cps")
    return data


@router.get("/api/status", tags=["dashboard"])
async def status(portal: PortalDep, user: Operator) -> list[dict[str, Any]]:
    """Every node's report, as ``sipline status --json`` gives it."""
    reports = await gather(portal.settings, portal.db)
    return [r.to_json() for r in sorted(reports, key=lambda r: (r.role, r.name))]


@router.get("/api/dashboard", tags=["dashboard"])
async def dashboard(portal: PortalDep, user: Viewer) -> dict[str, Any]:
    return await snapshot(portal, user)


@router.get("/api/live/dashboard", tags=["dashboard"])
async def live(
    request: Request, portal: PortalDep, user: Viewer,
    frames: Annotated[int | None, Query(ge=1, description="stop after this many (default: never)")] = None,
) -> EventSourceResponse:  # fmt: skip
    """The dashboard's figures as server-sent events (``dashboard``), one every
    ``portal.live_interval`` seconds."""
    refused = portal.streams.take(user.id)  # counted now: a burst cannot all pass
    if refused:
        raise refuse(refused, "live_stream", user, request)
    interval = portal.settings.portal.live_interval

    async def frames_of() -> Any:
        sent = 0
        while frames is None or sent < frames:
            # The user read again each frame, as each request does: one removed, or
            # given another role or account, stops seeing figures at once.
            now = await portal.users.by_id(user.id)
            if now is None or (now.role, now.account) != (user.role, user.account):
                return
            data = await snapshot(portal, user)
            yield {"event": "dashboard", "data": orjson.dumps(data).decode()}
            sent += 1
            if frames is None or sent < frames:
                await asyncio.sleep(interval)

    response = HeldEvents(frames_of(), ping=15)
    response.hold(portal.streams, user.id, None, "live_stream")
    return response


class HeldEvents(Held, EventSourceResponse):
    pass


@router.get("/", include_in_schema=False)
async def dashboard_page(request: Request, portal: PortalDep, user: Viewer) -> Any:
    return page(request, user, "dashboard.html", data=await snapshot(portal, user))

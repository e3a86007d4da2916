"""Live calls (caller, callee, account, carrier, start, duration, running cost) and
billing in real time (each account's spend today and this month, calls in
progress included), from the ACR nodes that hold the calls and the CDRs.

An operator hangs a call up through sipline.cluster.calls.hang_up: an admin
action signed with the admin key, sent to the B2BUA nodes, never a request a
browser could make to a node itself.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from portal.context import Change, Operator, Portal, PortalDep, Viewer, audited, page
from portal.rollup import month_start
from portal.users import User
from sipline.cluster.calls import CUSTOMER_FIELDS, LiveCall, hang_up, live_calls
from sipline.storage.cdrs import project

router = APIRouter()


async def visible_calls(portal: Portal, user: User) -> tuple[list[LiveCall], str]:
    found, note = await portal.shared.get("calls", lambda: live_calls(portal.db))
    if not user.admin:
        found = [c for c in found if c.account == user.account]
    return found, note


@router.get("/api/calls", tags=["calls"])
async def calls(portal: PortalDep, user: Viewer) -> dict[str, Any]:
    found, note = await visible_calls(portal, user)
    now = time.time()
    listed = [c.to_json(now) for c in found]
    if not user.admin:
        listed = [project(c, CUSTOMER_FIELDS) for c in listed]
    return {"calls": listed, "note": note}


@router.post("/api/calls/{call_id}/hangup", tags=["calls"])
async def hangup(request: Request, call_id: str, portal: PortalDep, user: Operator) -> dict[str, str]:
    found, _ = await live_calls(portal.db)
    call = next((c for c in found if c.call_id == call_id), None)
    try:
        node = await hang_up(portal.settings, portal.db, call_id)
    except ValueError as exc:
        raise HTTPException(503, str(exc)) from None
    if node is None:
        raise HTTPException(404, f"no running B2BUA holds call {call_id}")
    before = call.to_json(time.time()) if call else {"call_id": call_id}
    await audited(request, user, Change("call_hangup", call_id, before, {"node": node}),
                  call.account if call else None)  # fmt: skip
    return {"hung_up": call_id, "node": node}


async def billing_of(portal: Portal, user: User) -> dict[str, Any]:
    """Per account: calls and cost today and this month (UTC), ended calls (CDRs)
    and calls in progress (their cost so far) added."""
    now = time.time()
    account = None if user.admin else user.account
    rollup = await portal.totals()
    today = rollup.totals(now - now % 86400, account) if rollup is not None else {}
    month = rollup.totals(month_start(now), account) if rollup is not None else {}
    running, note = await visible_calls(portal, user)
    accounts: dict[str, dict[str, Any]] = {}

    def row(name: str | None) -> dict[str, Any]:
        key = name or "-"
        return accounts.setdefault(key, {
            "account": key, "today_calls": 0, "today_cost": 0.0, "month_calls": 0,
            "month_cost": 0.0, "live_calls": 0, "live_cost": 0.0,
        })  # fmt: skip

    for name, t in today.items():
        row(name).update(today_calls=t.calls, today_cost=t.cost)
    for name, t in month.items():
        row(name).update(month_calls=t.calls, month_cost=t.cost)
    for call in running:
        r = row(call.account)
        r["live_calls"] += 1
        r["live_cost"] = round(r["live_cost"] + call.cost(now), 6)
    if account is not None:
        row(account)  # a customer sees its account even before its first call
    for r in accounts.values():
        r["today_total"] = round(r["today_cost"] + r["live_cost"], 6)
        r["month_total"] = round(r["month_cost"] + r["live_cost"], 6)
    if rollup is None:
        note = "; ".join(filter(None, [note, "ended calls still being summed (portal start)"]))
    return {"at": now, "accounts": sorted(accounts.values(), key=lambda r: r["account"]),
            "note": note}  # fmt: skip


@router.get("/api/billing", tags=["billing"])
async def billing(portal: PortalDep, user: Viewer) -> dict[str, Any]:
    return await billing_of(portal, user)


@router.get("/calls", include_in_schema=False)
async def calls_page(request: Request, portal: PortalDep, user: Viewer) -> Any:
    found, note = await visible_calls(portal, user)
    template = "call_rows.html" if "hx-request" in request.headers else "calls.html"
    return page(request, user, template, calls=found, note=note, now=time.time())


@router.get("/billing", include_in_schema=False)
async def billing_page(request: Request, portal: PortalDep, user: Viewer) -> Any:
    data = await billing_of(portal, user)
    template = "billing_rows.html" if "hx-request" in request.headers else "billing.html"
    return page(request, user, template, data=data)

"""Accounts and licences: each account's concurrent-call licence, grace state (by the
B2BUA's own rules, sipline.grace), calls up now (from the running B2BUAs) and the
audit of calls over the licence. Operators set licences as ``sipline account set``
does (a fresh grace period, pushed to the nodes); a customer sees its own account.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from portal.context import Change, Operator, Portal, PortalDep, Viewer, audited, page, require_own
from portal.users import User
from sipline.cluster import live
from sipline.cluster.changes import announce
from sipline.grace import Licence
from sipline.storage.accounts import Account, Accounts

router = APIRouter(tags=["accounts"])


class LicenceChange(BaseModel):
    name: str = Field(max_length=64)
    licence: int = Field(ge=0, le=1_000_000)
    grace_hours: int | None = Field(default=None, ge=0, le=100_000,
                                    description="none: the config's b2bua.grace_hours")  # fmt: skip


def as_json(account: Account, portal: Portal, calls: dict[str, int] | None, now: float) -> dict[str, Any]:
    hours = portal.settings.b2bua.grace_hours if account.grace_hours is None else account.grace_hours
    licence = Licence(account.name, account.licence, hours, account.grace_started_at)
    return {
        "name": account.name, "licence": account.licence, "grace_hours": hours,
        "grace_default": account.grace_hours is None, "state": licence.state(now),
        "grace_started_at": account.grace_started_at, "grace_ends_at": licence.grace_ends_at,
        "calls": None if calls is None else calls.get(account.name, 0),
    }  # fmt: skip


async def accounts_of(portal: Portal, user: User) -> dict[str, Any]:
    every = await Accounts(portal.db).list()
    found = every if user.admin else [a for a in every if a.name == user.account]
    # Every account's count, whoever asks: the answer is shared (portal.shared).
    calls, note = await portal.shared.get("accounts", lambda: live.account_calls(
        portal.db, [a.name for a in every], shared=bool(portal.settings.redis.url)))  # fmt: skip
    now = time.time()
    return {"accounts": [as_json(a, portal, calls, now) for a in found], "note": note}


@router.get("/api/accounts")
async def accounts(portal: PortalDep, user: Viewer) -> dict[str, Any]:
    return await accounts_of(portal, user)


@router.post("/api/accounts")
async def set_licence(
    request: Request, body: LicenceChange, portal: PortalDep, user: Operator
) -> dict[str, Any]:
    store = Accounts(portal.db)
    before = await store.get(body.name)
    account = await store.set(body.name, body.licence, grace_hours=body.grace_hours)
    now = time.time()
    after = as_json(account, portal, None, now)
    await audited(request, user, Change("licence_set", account.name,
                  as_json(before, portal, None, now) if before else None, after), account.name)  # fmt: skip
    await announce(portal.settings, portal.db, "accounts", (account.name,))
    return after


@router.get("/api/accounts/{name}/audit")
async def over_use(
    name: str, portal: PortalDep, user: Viewer, limit: Annotated[int, Query(ge=1)] = 100
) -> list[dict[str, Any]]:
    """The latest calls over the account's licence, newest first."""
    require_own(user, name)
    rows = await Accounts(portal.db).audit(name, min(limit, portal.settings.portal.max_page))
    return [{"at": r.at, "calls": r.count, "licence": r.licence, "allowed": r.allowed,
             "call_id": r.call_id, "node": r.node} for r in rows]  # fmt: skip


@router.get("/accounts", include_in_schema=False)
async def accounts_page(request: Request, portal: PortalDep, user: Viewer) -> Any:
    data = await accounts_of(portal, user)
    audits = {a["name"]: await over_use(a["name"], portal, user, 20) for a in data["accounts"]}
    return page(request, user, "accounts.html", data=data, audits=audits)

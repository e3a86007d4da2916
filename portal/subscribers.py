"""Subscribers: list, search, add, remove, reset the password (HA1 only, as
``sipline subscriber`` does), and a subscriber's registrations.

The same store calls as the CLI (sipline.storage.Subscribers) and the same push
to the nodes (sipline.cluster.changes.announce). A customer sees and changes
only the subscribers of its account, and adds them to it whatever it asks.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from portal.context import (
    Change,
    PortalDep,
    Viewer,
    audited,
    page,
    require_own,
    scope_account,
    source_of,
)
from sipline import logs
from sipline.cluster.changes import announce
from sipline.sip.uri import number_user
from sipline.storage import DuplicateSubscriber, Subscriber, Subscribers, parse_aor
from sipline.storage.locations import bindings_of

router = APIRouter()
log = logging.getLogger("sipline.portal")


class NewSubscriber(BaseModel):
    aor: str = Field(max_length=300, examples=["carol@example.com"])
    password: str = Field(min_length=1, max_length=256)
    account: str | None = Field(default=None, max_length=64)


class NewPassword(BaseModel):
    password: str = Field(min_length=1, max_length=256)


def as_json(s: Subscriber) -> dict[str, Any]:
    return {"aor": s.aor, "account": s.account, "created_at": s.created_at,
            "aliases": sorted(s.aliases)}  # fmt: skip


async def _listed(portal: PortalDep, user: Viewer, q: str, account: str | None) -> list[Subscriber]:
    return await Subscribers(portal.db).list(
        account=scope_account(user, account), search=q, limit=portal.settings.portal.max_page
    )


@router.get("/api/subscribers", tags=["subscribers"])
async def list_subscribers(
    portal: PortalDep, user: Viewer,
    q: str = Query("", max_length=300, description="part of user@domain"),
    account: str | None = Query(None, max_length=64, description="operators: one account"),
) -> list[dict[str, Any]]:  # fmt: skip
    return [as_json(s) for s in await _listed(portal, user, q, account)]


async def _own(portal: PortalDep, user: Viewer, aor: str) -> Subscriber:
    username, domain = parse_aor(aor)
    found = await Subscribers(portal.db).get(username, domain)
    if found is None or (not user.admin and found.account != user.account):
        # A customer is not told whether another account's subscriber exists.
        raise HTTPException(404, f"no subscriber {username}@{domain}")
    return found


@router.post("/api/subscribers", tags=["subscribers"], status_code=201)
async def add_subscriber(
    request: Request, body: NewSubscriber, portal: PortalDep, user: Viewer
) -> dict[str, Any]:
    account = body.account or None if user.admin else user.account
    if user.admin:
        added = await Subscribers(portal.db).add(body.aor, body.password, account=account)
    else:
        added = await _add_own(request, portal, user, body)
    await audited(request, user, Change("subscriber_add", added.aor, None, as_json(added)), account)
    await announce(portal.settings, portal.db, "subscribers", (added.aor,))
    return as_json(added)


async def _add_own(request: Request, portal: PortalDep, user: Viewer, body: NewSubscriber) -> Subscriber:
    """A customer's new subscriber. A telephone number as user part is the
    operator's to give (the proxy routes a number of a served domain to its
    bindings before off-net: a customer's "442071234567@our-domain" would take
    other subscribers' calls to that number). One answer for every refusal, so an
    AOR's existence in another account is not told."""
    username, domain = parse_aor(body.aor)
    refusal = HTTPException(409, f"{username}@{domain} cannot be added: numbers are provisioned"
                                 " by the operator, and a name may be taken")  # fmt: skip
    if number_user(unquote(username)):
        logs.event(log, "subscriber_refused", logging.WARNING, user=user.username,
                   source=source_of(request), aor=body.aor[:80], reason="number")  # fmt: skip
        raise refusal
    try:
        return await Subscribers(portal.db).add(body.aor, body.password, account=user.account)
    except DuplicateSubscriber:
        raise refusal from None


@router.delete("/api/subscribers/{aor}", tags=["subscribers"])
async def remove_subscriber(
    request: Request, aor: str, portal: PortalDep, user: Viewer
) -> dict[str, str]:
    found = await _own(portal, user, aor)
    await Subscribers(portal.db).remove(found.aor)
    await audited(request, user, Change("subscriber_remove", found.aor, as_json(found)),
                  found.account)  # fmt: skip
    await announce(portal.settings, portal.db, "subscribers", (found.aor,))
    return {"removed": found.aor}


@router.post("/api/subscribers/{aor}/password", tags=["subscribers"])
async def reset_password(
    request: Request, aor: str, body: NewPassword, portal: PortalDep, user: Viewer
) -> dict[str, str]:
    found = await _own(portal, user, aor)
    await Subscribers(portal.db).set_password(found.aor, body.password)
    # The audit says that it changed, never the password nor its HA1.
    await audited(request, user, Change("subscriber_password", found.aor), found.account)
    await announce(portal.settings, portal.db, "subscribers", (found.aor,))
    return {"password_reset": found.aor}


@router.get("/api/subscribers/{aor}/registrations", tags=["subscribers"])
async def registrations(aor: str, portal: PortalDep, user: Viewer) -> list[dict[str, Any]]:
    found = await _own(portal, user, aor)
    return await bindings_of(portal.db, found.aor, time.time())


# -- pages -------------------------------------------------------------------------------


@router.get("/subscribers", include_in_schema=False)
async def subscribers_page(
    request: Request, portal: PortalDep, user: Viewer, q: str = Query("", max_length=300)
) -> Any:
    rows = await _listed(portal, user, q, None)
    template = "subscriber_rows.html" if "hx-request" in request.headers else "subscribers.html"
    return page(request, user, template, subscribers=rows, q=q)


@router.get("/subscribers/{aor}", include_in_schema=False)
async def subscriber_page(request: Request, aor: str, portal: PortalDep, user: Viewer) -> Any:
    found = await _own(portal, user, aor)
    require_own(user, found.account)
    bindings = await bindings_of(portal.db, found.aor, time.time())
    return page(request, user, "subscriber.html", subscriber=found, bindings=bindings)

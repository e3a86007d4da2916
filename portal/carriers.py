"""Carriers, gateways, rate decks, routing profiles, DIDs, ``explain`` and the error
queue: operators only, with the CLI's implementation (sipline.carriers: the same
checks, the same versioning, the same push to the ACR nodes).

A deck upload is the CSV itself as the request body (at most
``portal.max_upload_bytes``), checked whole before anything is written, as
``sipline rates import`` does: a bad row loads nothing and the answer is the
CLI's report (line numbers and reasons).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from portal.context import (
    Change,
    Operator,
    Portal,
    PortalDep,
    Viewer,
    audited,
    page,
    scope_account,
    source_of,
)
from sipline import logs
from sipline.carriers.deck import DeckError, parse_deck, write_deck
from sipline.carriers.model import Did
from sipline.carriers.store import AcrStore, check_name, parse_number
from sipline.cluster import live
from sipline.cluster.changes import announce

router = APIRouter(tags=["carriers"])
log = logging.getLogger("sipline.portal")


async def carriers_of(portal: Portal) -> tuple[list[dict[str, Any]], str]:
    store = AcrStore(portal.db)
    carriers = await store.carriers()
    sizes = await store.deck_sizes()
    states, note = await portal.shared.get("gateways", lambda: live.gateway_states(portal.db))
    return [
        {"name": c.name, "enabled": c.enabled, "capacity": c.capacity, "cps": c.cps,
         "rates": sizes.get(c.name, 0),
         "gateways": [{"address": g.address, "transport": g.transport, "weight": g.weight,
                       "state": states.get(g.address, "unknown")} for g in c.gateways]}
        for c in carriers
    ], note  # fmt: skip


@router.get("/api/carriers")
async def carriers(portal: PortalDep, user: Operator) -> dict[str, Any]:
    """Carriers with their gateways' live probe state (from the running ACR nodes)."""
    found, note = await carriers_of(portal)
    return {"carriers": found, "note": note}


async def _enable(request: Request, portal: Portal, user: Any, name: str, on: bool) -> dict[str, Any]:
    store = AcrStore(portal.db)
    before = await store.carrier(name)
    await store.set_enabled(name, on)
    await audited(request, user, Change("carrier_enable" if on else "carrier_disable", name,
                  {"enabled": before.enabled}, {"enabled": on}), None)  # fmt: skip
    await announce(portal.settings, portal.db, "acr", (name,))
    return {"carrier": name, "enabled": on}


@router.post("/api/carriers/{name}/enable")
async def enable(request: Request, name: str, portal: PortalDep, user: Operator) -> dict[str, Any]:
    return await _enable(request, portal, user, name, True)


@router.post("/api/carriers/{name}/disable")
async def disable(request: Request, name: str, portal: PortalDep, user: Operator) -> dict[str, Any]:
    return await _enable(request, portal, user, name, False)


async def _body(request: Request, portal: Portal) -> bytes:
    limit = portal.settings.portal.max_upload_bytes
    declared = request.headers.get("content-length", "")
    data = bytearray()
    if not (declared.isdigit() and int(declared) > limit):
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                break
        else:
            return bytes(data)
    portal.uploads_refused += 1
    logs.event(log, "upload_refused", logging.WARNING, source=source_of(request),
               limit=limit, declared=declared or "-")  # fmt: skip
    raise HTTPException(413, f"a deck of at most {limit} bytes (portal.max_upload_bytes)")


@router.post("/api/carriers/{name}/deck", responses={400: {"description": "bad rows: nothing loaded"}})
async def upload_deck(request: Request, name: str, portal: PortalDep, user: Operator) -> Any:
    """Replace the carrier's deck with the CSV of the body (``prefix,rate[,connect_fee,
    first_increment,next_increment,effective_from,effective_to]``)."""
    check_name(name)
    data = await _body(request, portal)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return JSONResponse({"detail": "the deck is not UTF-8 text", "errors": [], "total": 1}, 400)
    filename = request.headers.get("x-filename", "deck.csv")[:100]
    try:
        # Checking a million rows takes seconds of CPU: not on the loop the streams share.
        deck = await asyncio.to_thread(parse_deck, text.splitlines(keepends=True), name, path=filename)
    except DeckError as exc:
        return JSONResponse({"detail": str(exc), "errors": exc.errors, "total": exc.total}, 400)
    before = (await AcrStore(portal.db).deck_sizes()).get(name, 0)
    loaded = await write_deck(portal.db, deck)
    await audited(request, user, Change("deck_import", name, {"rates": before},
                  {"rates": loaded, "file": filename}), None)  # fmt: skip
    await announce(portal.settings, portal.db, "acr", (name,))
    return {"carrier": name, "rates": loaded}


@router.get("/api/carriers/{name}/deck")
async def view_deck(
    name: str, portal: PortalDep, user: Operator,
    prefix: Annotated[str, Query(max_length=32)] = "", limit: Annotated[int, Query(ge=1)] = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = await AcrStore(portal.db).deck_page(name, prefix, min(limit, portal.settings.portal.max_page))
    return [{name: getattr(r, name) for name in r.__slots__} for r in rows]


@router.get("/api/profiles")
async def profiles(portal: PortalDep, user: Operator) -> list[dict[str, Any]]:
    return [
        {"prefix": p.prefix or "default", "availability": p.weight_availability,
         "quality": p.weight_quality, "price": p.weight_price, "min_quality": p.min_quality,
         "max_price": p.max_price, "final_codes": sorted(p.final_codes), "attempts": p.max_attempts}
        for p in await AcrStore(portal.db).profiles()
    ]  # fmt: skip


@router.get("/api/explain")
async def explain(
    portal: PortalDep, user: Operator, number: Annotated[str, Query(max_length=40)]
) -> dict[str, Any]:
    """How a call to ``number`` would be routed now: the explanation of a running ACR
    node, the one ``sipline acr explain`` prints."""
    digits = parse_number(number)
    body, note = await live.explain(portal.db, digits)
    if body is None:
        raise HTTPException(503, note)
    return {"number": digits, "source": note, "text": body["text"], "json": body["json"]}


class NewDid(BaseModel):
    number: str = Field(max_length=40)
    proxy: str = Field(max_length=300, examples=["127.0.0.1:5060"])
    backups: list[str] = Field(default_factory=list, max_length=16)
    account: str = Field(default="", max_length=64)


@router.get("/api/dids")
async def dids(portal: PortalDep, user: Viewer) -> list[dict[str, Any]]:
    """Every DID for an operator; a customer's own account's only."""
    owner = None if user.admin else scope_account(user, None)
    return [{"number": d.number, "proxy": d.proxy, "backups": list(d.backups), "account": d.account}
            for d in await AcrStore(portal.db).dids(owner)]  # fmt: skip


@router.post("/api/dids", status_code=201)
async def add_did(request: Request, body: NewDid, portal: PortalDep, user: Operator) -> dict[str, Any]:
    did = Did(parse_number(body.number), body.proxy, tuple(body.backups), body.account)
    await AcrStore(portal.db).add_did(did)
    after = {"number": did.number, "proxy": did.proxy, "backups": list(did.backups),
             "account": did.account}  # fmt: skip
    await audited(request, user, Change("did_add", did.number, None, after), did.account or None)
    await announce(portal.settings, portal.db, "acr", (did.number,))
    return after


@router.get("/api/errors")
async def errors(portal: PortalDep, user: Operator, limit: int = 100) -> list[dict[str, Any]]:
    """Rows the database refused (error_queue), with the reason; the latest first."""
    rows = await AcrStore(portal.db).errors(limit=min(max(limit, 1), portal.settings.portal.max_page))
    return [{"source": s, "reason": r, "row": row} for s, r, row in reversed(rows)]


# -- pages -------------------------------------------------------------------------------


@router.get("/carriers", include_in_schema=False)
async def carriers_page(request: Request, portal: PortalDep, user: Operator) -> Any:
    found, note = await carriers_of(portal)
    listed = await profiles(portal, user)
    return page(request, user, "carriers.html", carriers=found, note=note, profiles=listed)


@router.get("/carriers/{name}/deck", include_in_schema=False)
async def deck_page(
    request: Request, name: str, portal: PortalDep, user: Operator,
    prefix: Annotated[str, Query(max_length=32)] = "",
) -> Any:  # fmt: skip
    rows = await AcrStore(portal.db).deck_page(name, prefix, 200)
    return page(request, user, "deck.html", carrier=name, rates=rows, prefix=prefix)


@router.get("/dids", include_in_schema=False)
async def dids_page(request: Request, portal: PortalDep, user: Viewer) -> Any:
    return page(request, user, "dids.html", dids=await dids(portal, user))


@router.get("/errors", include_in_schema=False)
async def errors_page(request: Request, portal: PortalDep, user: Operator) -> Any:
    return page(request, user, "errors.html", errors=await errors(portal, user, 200))

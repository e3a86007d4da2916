"""CDRs: search by time range, account, caller, callee, carrier and final code, a
page at a time; totals of the selection; the whole selection as CSV, streamed
from a server-side cursor (sipline.storage.cdrs), never held in memory.

A customer's selection is always its own account's, whatever it asks for.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from portal.context import Held, PortalDep, Viewer, page, refuse, scope_account
from sipline.storage import cdrs
from sipline.storage.database import InvalidValue

router = APIRouter()
DAY = 86400.0


def parse_time(text: str | None, name: str) -> float | None:
    """ISO 8601 (``2026-12-06``, ``2026-12-06T10:00:00Z``) or Unix seconds; UTC unless it
    says otherwise."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValue(f"{name}: expected ISO 8601 or Unix seconds, not {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def selection(
    user: Viewer, portal: PortalDep,
    since: Annotated[str | None, Query(max_length=40, description="from (ISO 8601 or Unix s)")] = None,
    until: Annotated[str | None, Query(max_length=40, description="to, excluded")] = None,
    account: Annotated[str | None, Query(max_length=64)] = None,
    caller: Annotated[str | None, Query(max_length=128, description="prefix")] = None,
    callee: Annotated[str | None, Query(max_length=64, description="prefix")] = None,
    carrier: Annotated[str | None, Query(max_length=64)] = None,
    code: Annotated[int | None, Query(ge=100, le=699, description="final SIP code")] = None,
) -> cdrs.CdrFilter:  # fmt: skip
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if not user.admin:
        start, end = bounded(start, end, portal.settings.portal.customer_span, time.time())
    return cdrs.CdrFilter(
        since=start, until=end,
        account=scope_account(user, account), caller=caller or None, callee=callee or None,
        carrier=carrier or None, code=code,
    )  # fmt: skip


def bounded(since: float | None, until: float | None, span: float, now: float) -> tuple[float, float]:
    """A customer's time range: at most ``span`` seconds (every search of a customer
    is then a bounded range scan of cdrs_account_started_at); without one, the
    last day."""
    end = until if until is not None else (now if since is None else min(now, since + span))
    start = since if since is not None else end - DAY
    if end - start > span:
        raise InvalidValue(f"since..until: at most {span:.0f} s (portal.customer_span)")
    return start, end


Selection = Annotated[cdrs.CdrFilter, Depends(selection)]


@router.get("/api/cdrs", tags=["cdrs"])
async def search(
    portal: PortalDep, user: Viewer, chosen: Selection,
    limit: Annotated[int, Query(ge=1)] = 50,
    before: Annotated[str | None, Query(max_length=64, description="next page: the `next` given")] = None,
) -> dict[str, Any]:  # fmt: skip
    found = await cdrs.search(
        portal.db, chosen, min(limit, portal.settings.portal.max_page), _cursor(before)
    )
    rows = found.rows if user.admin else [cdrs.project(r, cdrs.CUSTOMER_COLUMNS) for r in found.rows]
    return {"cdrs": rows, "next": f"{found.next[0]!r}:{found.next[1]}" if found.next else None}


def _cursor(text: str | None) -> tuple[float, int] | None:
    if not text:
        return None
    at, _, id_ = text.partition(":")
    try:
        return float(at), int(id_)
    except ValueError:
        raise InvalidValue(f"before: expected the `next` of a previous page, not {text!r}") from None


@router.get("/api/cdrs/totals", tags=["cdrs"])
async def totals(portal: PortalDep, chosen: Selection) -> dict[str, Any]:
    t = await cdrs.totals(portal.db, chosen)
    return {"calls": t.calls, "answered": t.answered, "billed_seconds": t.billed_seconds,
            "cost": t.cost}  # fmt: skip


@router.get("/api/cdrs.csv", tags=["cdrs"])
async def export(
    request: Request, portal: PortalDep, user: Viewer, chosen: Selection
) -> StreamingResponse:
    """Every CDR of the selection, oldest first, streamed as CSV (a customer: its own,
    within since..until, both required)."""
    if not user.admin and not (request.query_params.get("since") and request.query_params.get("until")):
        raise InvalidValue("since and until: required for an export")
    columns = cdrs.COLUMNS if user.admin else cdrs.CUSTOMER_COLUMNS
    refused = portal.exports.take(user.id)  # each export holds a database connection
    if refused:
        raise refuse(refused, "export", user, request)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    response = HeldStream(
        csv_chunks(cdrs.stream_csv(portal.db, chosen, columns=columns), columns),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="cdrs-{stamp}.csv"'},
    )
    response.hold(portal.exports, user.id, portal.settings.portal.export_timeout, "export")
    return response


class HeldStream(Held, StreamingResponse):
    pass


async def csv_chunks(
    lines: AsyncIterator[list[tuple[Any, ...]]], columns: tuple[str, ...] = cdrs.COLUMNS
) -> AsyncIterator[bytes]:
    """The header, then each batch of lines the database formatted as one chunk."""
    yield (",".join(columns) + "\n").encode()
    async with aclosing(lines):  # a client gone mid-export frees the cursor at once
        async for batch in lines:
            yield ("\n".join(str(row[0]) for row in batch) + "\n").encode()


@router.get("/cdrs", include_in_schema=False)
async def cdrs_page(
    request: Request, portal: PortalDep, user: Viewer, chosen: Selection,
    before: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:  # fmt: skip
    if chosen.since is None and chosen.until is None:  # an operator's default (a customer's is set)
        chosen = cdrs.CdrFilter(**{**_fields(chosen), "since": time.time() - DAY})
    found = await cdrs.search(portal.db, chosen, 50, _cursor(before))
    query = "&".join(f"{k}={quote(v)}" for k, v in request.query_params.items() if k != "before")
    if "since" not in request.query_params and "until" not in request.query_params:
        query += ("&" if query else "") + f"since={chosen.since!r}"
        if chosen.until is not None:  # a customer's export needs both
            query += f"&until={chosen.until!r}"
    older = f"{found.next[0]!r}:{found.next[1]}" if found.next else None
    return page(request, user, "cdrs.html", cdrs=found.rows, query=query, chosen=chosen,
                utc=_iso, older=older)  # fmt: skip


@router.get("/cdrs/totals", include_in_schema=False)
async def totals_fragment(request: Request, portal: PortalDep, user: Viewer, chosen: Selection) -> Any:
    """The selection's totals, loaded after the page (a big selection takes a while to sum)."""
    return page(request, user, "cdr_totals.html", totals=await cdrs.totals(portal.db, chosen))


def _fields(chosen: cdrs.CdrFilter) -> dict[str, Any]:
    return {name: getattr(chosen, name) for name in cdrs.CdrFilter.__slots__}


def _iso(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))

"""What every request handler of the portal needs: the ``Portal`` (settings, store,
login guard, templates) and who is asking (``Viewer``), as FastAPI dependencies.

Who is asking comes from the signed session cookie only, and the user is read
again from the store on every request: a user removed, or given another role,
loses what it had at their next click, not when the cookie expires.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from starlette.types import Receive, Scope, Send

from portal.audit import record
from portal.guard import LoginGuard
from portal.rollup import Rollup, refresh
from portal.users import User, Users
from sipline import logs
from sipline.config import Settings
from sipline.storage.database import Database, StorageError

T = TypeVar("T")
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
CSRF_KEY = "csrf"
log = logging.getLogger("sipline.portal")
USER_KEY = "uid"


class Shared:
    """What the nodes said lately, kept ``ttl`` seconds by key: a hundred viewers of
    live calls ask each node once a ``portal.live_interval``, not once each, and a
    node busy carrying calls is not asked more because more people look at it."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one ask in flight per key; the others wait for its answer
            now = time.monotonic()
            found = self._values.get(key)
            if found is None or now - found[0] >= self.ttl:
                found = (now, await make())
                self._values[key] = found
            value: T = found[1]
            return value


class Slots:
    """What a costly response holds while it runs (a live stream, a CSV export): at
    most ``total`` at once and ``per_user`` for one user. Taken before the response
    is returned, given back by ``Held`` however it ends."""

    def __init__(self, total: int, per_user: int) -> None:
        self.total, self.per_user = total, per_user
        self.open = 0
        self.refused = 0
        self._by_user: dict[int, int] = {}  # holders only: at most ``total`` keys

    def take(self, user: int) -> int:
        """0 when taken; else the status to answer (503 all taken, 429 the user's)."""
        if self.open >= self.total:
            self.refused += 1
            return 503
        if self._by_user.get(user, 0) >= self.per_user:
            self.refused += 1
            return 429
        self.open += 1
        self._by_user[user] = self._by_user.get(user, 0) + 1
        return 0

    def give(self, user: int) -> None:
        self.open -= 1
        left = self._by_user.pop(user, 1) - 1
        if left:
            self._by_user[user] = left


class Held:
    """Mixin for a streamed response: gives back its slot when done, however it ends
    (sent, cut at ``deadline`` seconds, or its client gone before the first byte,
    when the body's generator never starts and its ``finally`` would never run)."""

    slots: Slots
    holder: int
    deadline: float | None = None
    what: str = ""  # for the log line of a cut

    def hold(self, slots: Slots, holder: int, deadline: float | None, what: str) -> None:
        self.slots, self.holder, self.deadline, self.what = slots, holder, deadline, what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                await super().__call__(scope, receive, send)  # type: ignore[misc]
        except TimeoutError:
            # The body stops short of its end: the client sees a cut transfer, not a
            # complete-looking file.
            client = scope.get("client")
            logs.event(log, "response_cut", logging.WARNING, what=self.what,
                       source=client[0] if client else "-", after=self.deadline)  # fmt: skip
        finally:
            self.slots.give(self.holder)


def refuse(status: int, what: str, user: User, request: Request) -> HTTPException:
    """The refusal of a response over its ``Slots``, logged with the source."""
    logs.event(log, f"{what}_refused", logging.WARNING, user=user.username,
               source=source_of(request), status=status)  # fmt: skip
    whose = "open at once" if status == 503 else "of yours open at once"
    noun = what.replace("_", " ")
    return HTTPException(status, f"too many {noun}s {whose}", headers={"Retry-After": "5"})


class Portal:
    """One running portal: its settings and store, shared by every request."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.users = Users(db)
        p = settings.portal
        self.guard = LoginGuard(p.login_failures, p.login_window, p.login_ban, p.max_sources)
        self.verifies = asyncio.Semaphore(p.login_verifies)  # argon2 verifies at once
        self.verifies_refused = 0
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        self.templates.env.filters["utc"] = utc
        self.streams = Slots(p.max_streams, p.streams_per_user)  # live streams
        self.exports = Slots(p.max_exports, p.exports_per_user)  # CSV exports
        self.uploads_refused = 0  # deck uploads over portal.max_upload_bytes
        self.shared = Shared(settings.portal.live_interval)
        self.rollup = Rollup()
        self._loading: asyncio.Task[None] | None = None

    async def totals(self) -> Rollup | None:
        """The CDR totals as of at most ``live_interval`` ago (one refresh at a time);
        None while the month is still being summed at start (a big table takes a
        while: pages show their other figures meanwhile, they do not wait)."""
        if not self.rollup.loaded:
            if self._loading is None:
                self._loading = asyncio.create_task(refresh(self.db, self.rollup))
            try:
                await asyncio.wait_for(asyncio.shield(self._loading), self.settings.portal.live_interval)
            except TimeoutError:
                return None
            except StorageError as exc:
                logs.event(log, "totals_unavailable", logging.WARNING, error=str(exc))
                self._loading = None  # tried again at the next look
                return None
            return self.rollup
        await self.shared.get("rollup", lambda: refresh(self.db, self.rollup))
        return self.rollup


def utc(at: float | None) -> str:
    """Unix seconds as the pages show a time: UTC, to the second."""
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (an anonymous session has one too:
    the login form needs it)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def source_of(request: Request) -> str:
    # The peer's address as the socket says; a header saying otherwise is believed
    # only from portal.trusted_proxies (uvicorn's ProxyHeadersMiddleware sets it).
    return request.client.host if request.client else "-"


async def viewer(request: Request) -> User:
    uid = request.session.get(USER_KEY)
    if not isinstance(uid, int):
        raise HTTPException(401, "log in first")
    user = await portal_of(request).users.by_id(uid)
    if user is None:
        request.session.clear()
        raise HTTPException(401, "log in first")
    if not user.admin and not user.account:
        # A customer row with no account would read as "every account" wherever a
        # query takes None for that: refused, whatever it asks.
        logs.event(log, "user_without_account", logging.WARNING, user=user.username,
                   source=source_of(request))  # fmt: skip
        raise HTTPException(403, "your user has no account: ask an operator")
    return user


async def operator(user: Annotated[User, Depends(viewer)]) -> User:
    if not user.admin:
        raise HTTPException(403, "operators only")
    return user


PortalDep = Annotated[Portal, Depends(portal_of)]
Viewer = Annotated[User, Depends(viewer)]
Operator = Annotated[User, Depends(operator)]


def scope_account(user: User, asked: str | None) -> str | None:
    """The account a request may see: a customer's own, whatever it asked for; an
    operator's choice (None: every account)."""
    if user.admin:
        return asked or None
    if not user.account:  # fail closed: None would select every account
        raise HTTPException(403, "your user has no account: ask an operator")
    return user.account


def require_own(user: User, account: str | None) -> None:
    """403 unless ``user`` may act on something of ``account``."""
    if not user.admin and (not user.account or account != user.account):
        raise HTTPException(403, "not an object of your account")


@dataclass(frozen=True, slots=True)
class Change:
    action: str
    target: str
    before: object = None
    after: object = None


async def audited(request: Request, user: User, change: Change, account: str | None) -> None:
    await record(
        portal_of(request).db, username=user.username, account=account,
        source=source_of(request), action=change.action, target=change.target,
        before=change.before, after=change.after,
    )  # fmt: skip


def page(request: Request, user: User | None, template: str, **values: object) -> object:
    portal = portal_of(request)
    return portal.templates.TemplateResponse(
        request, template, {"user": user, "csrf": csrf_token(request), **values}
    )

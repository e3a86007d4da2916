"""The portal's ASGI app: FastAPI (OpenAPI at /api/openapi.json, docs at /api/docs),
signed session cookies, CSRF on every state-changing request, the login and its
rate limit, and the pages and API of each part (their own modules).

Trust (docs/design.md "The portal"): the session cookie is signed (itsdangerous,
keyed by a key derived from the node's secret) and carries the user's id and a
CSRF token; every POST, PUT, PATCH and DELETE must repeat that token in the
``X-CSRF-Token`` header (HTMX sends it from the page; scripts read it from
``GET /api/csrf``), so another site cannot make a logged-in browser change
anything. SameSite=strict keeps the cookie off cross-site requests too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal import accounts, calls, carriers, cdrs, dashboard, subscribers
from portal.audit import entries
from portal.context import (
    CSRF_KEY,
    STATIC,
    USER_KEY,
    Portal,
    PortalDep,
    Viewer,
    csrf_token,
    page,
    source_of,
)
from portal.guard import loggable
from sipline import __version__, logs
from sipline.config import ConfigError, Settings
from sipline.secret import node_secret
from sipline.storage.database import Database, IntegrityError, InvalidValue, StorageError

log = logging.getLogger("sipline.portal")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = b"x-csrf-token"
COOKIE = "sipline_portal"


def session_key(settings: Settings) -> str:
    """The session cookies' signing key: derived from the node's secret, so the
    secret itself never signs anything a browser holds."""
    secret = node_secret(settings)
    if not secret:  # an empty key would let anyone sign a session cookie
        raise ConfigError(
            f"auth.secret: not set, and no key could be read from {settings.node.data_dir}/node.key"
        )
    return hmac.new(secret.encode(), b"sipline portal session", hashlib.sha256).hexdigest()


class CsrfGuard:
    """Refuses (403) a state-changing request whose X-CSRF-Token is not the session's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            expected = scope.get("session", {}).get(CSRF_KEY)
            given = dict(scope["headers"]).get(CSRF_HEADER, b"").decode("latin-1")
            if not isinstance(expected, str) or not hmac.compare_digest(given, expected):
                client = scope.get("client")
                logs.event(log, "csrf_refused", logging.WARNING, path=scope["path"],
                           source=client[0] if client else "-")  # fmt: skip
                response = JSONResponse({"detail": "missing or wrong CSRF token"}, 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Scripts only from our own files: a value a template prints can never run, whatever
# the escaping of its context (OWASP: JS in attributes is not made safe by HTML escaping).
CSP = b"default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
CSP_HEADER = b"content-security-policy"


class SecurityHeaders:
    """Adds the Content-Security-Policy to every HTTP response that has none of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == CSP_HEADER for name, _ in headers):
                    headers.append((CSP_HEADER, CSP))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)


class Login(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


def build_app(settings: Settings, db: Database) -> FastAPI:
    p = settings.portal
    app = FastAPI(
        title="sipline portal",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url=None,  # served below, with a policy that lets Swagger UI run
        redoc_url=None,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_key(settings),
                session_cookie=COOKIE,
                max_age=p.session_max_age,
                same_site="strict",
                https_only=p.secure_cookies,
            ),
            Middleware(CsrfGuard),
        ],
    )
    app.state.portal = Portal(settings, db)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidValue, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StorageError, _storage)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _unprocessable)  # type: ignore[arg-type]

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> Response:
        page = get_swagger_ui_html(openapi_url="/api/openapi.json", title="sipline portal API")
        return Response(bytes(page.body), media_type="text/html",
                        headers={"Content-Security-Policy": _docs_policy(bytes(page.body))})  # fmt: skip

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request) -> Any:
        return page(request, None, "login.html")

    @app.get("/api/csrf", tags=["session"])
    async def csrf(request: Request) -> dict[str, str]:
        """The session's CSRF token, for the X-CSRF-Token header of POST/PUT/DELETE."""
        return {"csrf": csrf_token(request)}

    @app.post("/api/login", tags=["session"])
    async def login(request: Request, body: Login, portal: PortalDep) -> Any:
        source, now, name = source_of(request), time.monotonic(), body.username
        if portal.verifies.locked():
            # argon2 costs a core for tens of ms: at most login_verifies at once.
            portal.verifies_refused += 1
            logs.event(log, "login_busy", logging.WARNING, source=source, username=loggable(name))
            return JSONResponse({"detail": "too many logins at once; try again shortly"}, 503,
                                headers={"Retry-After": "1"})  # fmt: skip
        wait = portal.guard.attempt(source, name, now)  # counted before the verify
        if wait:
            logs.event(log, "login_refused", logging.WARNING, source=source,
                       username=loggable(name), retry_after=round(wait))  # fmt: skip
            return JSONResponse({"detail": "too many failed logins; try again later"}, 429,
                                headers={"Retry-After": str(int(wait) + 1)})  # fmt: skip
        async with portal.verifies:
            user = await portal.users.verify(name, body.password)
        if user is None:
            shut = portal.guard.failed(source, name)
            logs.event(log, "login_failed", logging.WARNING, source=source,
                       username=loggable(name), shut_out=shut)  # fmt: skip
            raise HTTPException(401, "wrong user name or password")
        portal.guard.succeeded(source, name)
        request.session.clear()
        request.session[USER_KEY] = user.id
        csrf_token(request)  # a new token with the new session
        logs.event(log, "login", source=source, username=user.username, role=user.role)
        return {"user": user.to_json(), "csrf": request.session[CSRF_KEY]}

    @app.post("/api/logout", tags=["session"])
    async def logout(request: Request) -> dict[str, str]:
        request.session.clear()
        return {"detail": "logged out"}

    @app.get("/api/me", tags=["session"])
    async def me(user: Viewer) -> dict[str, object]:
        return user.to_json()

    @app.get("/api/health", tags=["session"])
    async def health(portal: PortalDep) -> dict[str, object]:
        """Counters of what the portal refused (no login needed, no data)."""
        guard = portal.guard
        return {"login_failures": guard.failed_total, "logins_refused": guard.refused_total,
                "streams": portal.streams.open, "streams_refused": portal.streams.refused,
                "exports": portal.exports.open, "exports_refused": portal.exports.refused,
                "uploads_refused": portal.uploads_refused,
                "logins_busy": portal.verifies_refused}  # fmt: skip

    @app.get("/api/audit", tags=["audit"])
    async def audit(portal: PortalDep, user: Viewer, limit: int = 100) -> list[dict[str, Any]]:
        """The latest changes, newest first: every one for operators, a customer's
        account's for a customer."""
        account = None if user.admin else user.account
        return await entries(portal.db, account, min(max(limit, 1), portal.settings.portal.max_page))

    @app.get("/audit", include_in_schema=False)
    async def audit_page(request: Request, portal: PortalDep, user: Viewer) -> Any:
        account = None if user.admin else user.account
        rows = await entries(portal.db, account, 200)
        return page(request, user, "audit.html", entries=rows)

    app.include_router(dashboard.router)
    app.include_router(subscribers.router)
    app.include_router(cdrs.router)
    app.include_router(calls.router)
    app.include_router(carriers.router)
    app.include_router(accounts.router)
    return app


def _docs_policy(html: bytes) -> str:
    """Swagger UI's page: its CDN and its one inline script by hash, nothing else."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
        for m in re.finditer(rb"<script>(.*?)</script>", html, re.S)
    )
    cdn = "https://cdn.jsdelivr.net"
    # Its styles are set inline by React, and a style cannot run a script.
    return (f"default-src 'self'; script-src {cdn} {hashes}; style-src {cdn} 'unsafe-inline';"
            " img-src 'self' data: https:; object-src 'none'; frame-ancestors 'none';"
            " base-uri 'none'")  # fmt: skip


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "hx-request" not in request.headers


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 401 and _wants_page(request):
        return RedirectResponse("/login", 303)
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


async def _invalid(request: Request, exc: InvalidValue) -> Response:
    return JSONResponse({"detail": str(exc)}, 400)


async def _storage(request: Request, exc: StorageError) -> Response:
    name = type(exc).__name__
    duplicate = isinstance(exc, IntegrityError) or name.startswith("Duplicate")
    status = 404 if name.startswith("Unknown") else 409 if duplicate else 503
    return JSONResponse({"detail": str(exc)}, status)


async def _unprocessable(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
    )
    return JSONResponse({"detail": problems or "bad request"}, 422)

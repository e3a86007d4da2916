"""``sipline portal``: the ASGI app served by uvicorn on the node's own event loop
(uvloop, as every role), over the same store as the operator commands."""

from __future__ import annotations

import logging

import uvicorn

from portal.app import build_app
from sipline import logs
from sipline.config import Settings, split_host_port
from sipline.storage import open_database, prepare_schema

log = logging.getLogger("sipline.portal")


def uvicorn_server(settings: Settings, app: object) -> uvicorn.Server:
    host, port = split_host_port(settings.portal.listen)
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="none",  # the running loop: the one run_node started
        lifespan="off",
        log_config=None,  # our own log lines (sipline.logs), not uvicorn's format
        access_log=False,
        # X-Forwarded-For only from portal.trusted_proxies (uvicorn's default would
        # trust 127.0.0.1, or $FORWARDED_ALLOW_IPS): never when there is none.
        proxy_headers=bool(settings.portal.trusted_proxies),
        forwarded_allow_ips=settings.portal.trusted_proxies or None,
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=1024,
        h11_max_incomplete_event_size=16 * 1024,
    )
    return uvicorn.Server(config)


async def serve_portal(settings: Settings) -> None:
    db = await open_database(settings.database.url)
    try:
        await prepare_schema(db)
        server = uvicorn_server(settings, build_app(settings, db))
        logs.event(log, "portal_listening", address=settings.portal.listen)
        await server.serve()  # until SIGINT or SIGTERM (uvicorn's handlers)
    finally:
        await db.close()

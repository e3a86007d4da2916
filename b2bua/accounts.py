"""Which account a call counts against (the accounts table itself is
``sipline.storage.accounts``). ``AccountDirectory`` maps the subscriber who placed
a call (``asserted_aor``: the proxy's P-Asserted-Identity, never the From) to
its account (``subscribers.account``) from a copy in memory, reloaded every
``refresh`` seconds, so no call waits on the database.
"""

from __future__ import annotations

import asyncio
import logging

from sipline.logs import event
from sipline.sip.errors import ParseError
from sipline.sip.headers import NameAddr
from sipline.sip.message import Request
from sipline.sip.uri import SipUri
from sipline.storage.database import Database, StorageError

log = logging.getLogger("sipline.b2bua.accounts")

class AccountDirectory:
    """Which account a call counts against, from the subscribers table."""

    def __init__(self, db: Database, refresh: float = 30.0) -> None:
        self._db = db
        self.refresh = refresh
        self._accounts: dict[str, str] = {}  # user@domain (domain lower-cased) -> account
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._accounts)

    async def load(self) -> None:
        """Read the subscribers' accounts now, and (first time) keep reading them every
        ``refresh`` seconds; a failed reload keeps the last copy."""
        rows = await self._db.fetchall(
            "SELECT username, domain, account FROM subscribers WHERE account IS NOT NULL"
        )
        self._accounts = {f"{user}@{domain.lower()}": account for user, domain, account in rows}
        if self._task is None and self.refresh > 0:
            self._task = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.load()
            except StorageError as exc:
                event(log, "accounts_not_reloaded", logging.WARNING, error=exc)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def account_of(self, aor: str) -> str | None:
        """The account of the subscriber ``aor`` (user@domain), None if it has none."""
        user, _, domain = aor.rpartition("@")
        return self._accounts.get(f"{user}@{domain.lower()}")


def asserted_aor(request: Request) -> str | None:
    """Who placed the call: the first SIP identity of P-Asserted-Identity, which
    the proxy writes after digest authentication (RFC 3325) and the B2BUA
    believes only from a trusted proxy; never the From, which the phone wrote.
    None without one."""
    for value in request.headers.get_all("p-asserted-identity"):
        try:
            identities = NameAddr.parse_list(value)
        except ParseError:
            continue
        for identity in identities:
            aor = _aor(identity)
            if aor is not None:
                return aor
    return None


def _aor(address: NameAddr) -> str | None:
    try:
        uri = address.uri
    except ParseError:
        return None
    if not isinstance(uri, SipUri) or not uri.user:
        return None  # a tel: identity names no subscriber of ours
    return f"{uri.user}@{uri.host.lower()}"

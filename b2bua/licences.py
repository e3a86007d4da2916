"""Account licences at the B2BUA: count each account's concurrent calls and
admit or refuse a new one (the rules are in ``b2bua.grace``).

The B2BUA asks ``admit(account, call_id)`` before it opens the B leg and
answers 403 with ``Admission.reason`` when the call is not allowed; it calls
``release(account, call_id)`` when the call ends, however it ends.

Counters: with ``redis.url`` each account's calls are a Redis sorted set
(call-id scored by when it is forgotten) that every B2BUA node shares, and
one Lua script checks and counts atomically, so two nodes never both take the
last licensed call. Without Redis they live in this process. Either way a
call is forgotten ``max_call_duration`` + a minute after its admission, so a
node that died with calls up does not hold its accounts' licences for ever.

Licences (the accounts table) are cached and reloaded every ``refresh``
seconds; the start of a grace period is written through at once (the first
node to write it wins, the others adopt its time). Audit rows are written in
batches in the background, never on a call's path.

A Redis that cannot be reached when the node starts is an error; one that
fails later lets calls through uncounted (logged and counted in
``failures``): refusing every call while Redis is down would be worse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sipline.logs import event
from sipline.storage.database import Database, StorageError, redact

from .accounts import Accounts, AuditRow
from .grace import Counted, Licence, LocalCalls

log = logging.getLogger("sipline.b2bua.licences")

KEY_PREFIX = "sipline:b2bua:calls:"
TTL_MARGIN = 60.0  # seconds a call is counted beyond the maximum call duration
REFRESH = 10.0
AUDIT_BATCH = 500
AUDIT_INTERVAL = 1.0
AUDIT_BACKLOG = 100_000  # rows kept while the database refuses them; older ones are dropped


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    reason: str = ""
    over: bool = False


ALLOWED = Admission(True)


class Counter(Protocol):
    async def admit(self, account: str, call_id: str, limit: int | None, now: float) -> Counted: ...
    async def release(self, account: str, call_id: str) -> None: ...
    async def counts(self, accounts: Iterable[str], now: float) -> dict[str, int]: ...
    async def close(self) -> None: ...


class InProcess:
    """``LocalCalls`` behind the asynchronous counter interface."""

    def __init__(self, ttl: float) -> None:
        self.calls = LocalCalls(ttl)

    async def admit(self, account: str, call_id: str, limit: int | None, now: float) -> Counted:
        return self.calls.admit(account, call_id, limit, now)

    async def release(self, account: str, call_id: str) -> None:
        self.calls.release(account, call_id)

    async def counts(self, accounts: Iterable[str], now: float) -> dict[str, int]:
        return {account: self.calls.count(account, now) for account in accounts}

    async def close(self) -> None:
        pass


# KEYS[1]: the account's calls. ARGV: now, forget-at, call-id, limit (-1: none), key ttl.
# Returns {admitted, count with this call, new}: the same as LocalCalls.admit.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return {1, n, 0}
end
local limit = tonumber(ARGV[4])
if limit >= 0 and n >= limit then
  return {0, n + 1, 1}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, n + 1, 1}
"""


class RedisCalls:
    """Each account's calls in a Redis sorted set shared by every B2BUA node."""

    def __init__(self, url: str, ttl: float) -> None:
        from sipline.storage.live import open_redis

        self.ttl = ttl
        self.url = url
        self.client: Any = open_redis(url)  # a Sentinel URL follows a promoted master
        self._admit = self.client.register_script(_ADMIT)

    async def check(self) -> None:
        """StorageError naming ``redis.url`` unless Redis answers (a node checks at start)."""
        try:
            await self.client.ping()
        except Exception as exc:
            where = redact(self.url)
            raise StorageError(f"redis.url {where}: Redis cannot be reached: {exc}") from None

    async def admit(self, account: str, call_id: str, limit: int | None, now: float) -> Counted:
        admitted, count, new = await self._admit(
            keys=[KEY_PREFIX + account],
            args=[now, now + self.ttl, call_id, -1 if limit is None else limit, int(self.ttl) + 1],
        )
        return Counted(bool(admitted), int(count), bool(new))

    async def release(self, account: str, call_id: str) -> None:
        await self.client.zrem(KEY_PREFIX + account, call_id)

    async def counts(self, accounts: Iterable[str], now: float) -> dict[str, int]:
        names = list(accounts)
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcount(KEY_PREFIX + name, f"({now}", "+inf")
            found = await pipe.execute()
        return {name: int(n) for name, n in zip(names, found, strict=True)}

    async def close(self) -> None:
        await self.client.aclose()


class Licences:
    """The licence check of one B2BUA node (see the module's doc)."""

    def __init__(
        self,
        db: Database,
        counter: Counter,
        *,
        grace_hours: float,
        node: str = "",
        refresh: float = REFRESH,
        clock: Any = time.time,
    ) -> None:
        self.accounts = Accounts(db)
        self.counter = counter
        self.grace_hours = grace_hours
        self.node = node
        self.refresh_every = refresh
        self.clock = clock
        self.licences: dict[str, Licence] = {}
        self.failures = 0  # counter (Redis) errors: calls let through uncounted
        self._counted: dict[str, str] = {}  # call-id -> account, for the calls this node counted
        self._starting: dict[str, float] = {}  # grace starts not yet in the database
        self._audit: list[AuditRow] = []
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(cls, settings: Any, db: Database) -> Licences:
        """Redis counters when ``redis.url`` is set (StorageError now if it cannot be
        reached), else in process; licences loaded now."""
        ttl = settings.b2bua.max_call_duration + TTL_MARGIN
        counter: Counter = (
            RedisCalls(settings.redis.url, ttl) if settings.redis.url else InProcess(ttl)
        )
        licences = cls(db, counter, grace_hours=settings.b2bua.grace_hours, node=settings.node.name)
        try:
            if isinstance(counter, RedisCalls):
                await counter.check()
            await licences.start()
        except BaseException:
            await counter.close()
            raise
        return licences

    async def start(self) -> None:
        """Load the licences, then reload them and write the audit in the background."""
        await self.refresh()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._every(self.refresh_every, self.refresh))]
        self._tasks.append(loop.create_task(self._every(AUDIT_INTERVAL, self.flush)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.flush()
        finally:
            await self.counter.close()

    # -- calls ---------------------------------------------------------------------------------
    def licensed(self, account: str | None) -> bool:
        """The account has a licence to count against; calls of others need no ``admit``."""
        return account is not None and account in self.licences

    async def admit(self, account: str | None, call_id: str, now: float | None = None) -> Admission:
        """Whether the call may go ahead; a call allowed and counted must be released."""
        if account is None:
            return ALLOWED
        licence = self.licences.get(account)
        if licence is None:
            return ALLOWED
        now = self.clock() if now is None else now
        try:
            counted = await self.counter.admit(account, call_id, licence.limit(now), now)
        except Exception as exc:  # Redis down or refusing: see the module's doc
            self.failures += 1
            event(log, "licence_not_counted", logging.WARNING, account=account, error=repr(exc))
            return ALLOWED
        if counted.admitted:
            self._counted[call_id] = account
        licence = self.licences.get(account, licence)  # may have moved while we waited
        verdict = licence.judge(counted.count, counted.admitted, now)
        if not verdict.over:
            return ALLOWED
        if counted.new:
            self._audit.append(
                AuditRow(
                    account, now, counted.count, licence.calls, verdict.allowed, call_id, self.node
                )
            )
            if len(self._audit) >= AUDIT_BATCH:
                asyncio.get_running_loop().create_task(self.flush())
            event(
                log, "licence_exceeded", logging.WARNING, account=account, calls=counted.count,
                licence=licence.calls, allowed=verdict.allowed, call_id=call_id,
            )  # fmt: skip
        if verdict.start_grace:
            await self._start_grace(account, now)
        return Admission(verdict.allowed, verdict.reason, over=True)

    async def release(self, account: str | None, call_id: str) -> None:
        """The call has ended; idempotent, and free for a call that was never counted."""
        counted = self._counted.pop(call_id, None)
        if counted is None:
            return
        try:
            await self.counter.release(counted, call_id)
        except Exception as exc:
            self.failures += 1
            event(log, "licence_not_released", logging.WARNING, account=counted, error=repr(exc))

    async def counts(self, now: float | None = None) -> dict[str, int]:
        """Every licensed account's concurrent calls (all nodes' with Redis)."""
        return await self.counter.counts(self.licences, self.clock() if now is None else now)

    # -- the accounts table --------------------------------------------------------------------
    async def _start_grace(self, account: str, at: float) -> None:
        # In memory first: calls admitted while the write is on its way see it started.
        self.licences[account] = self.licences[account].started(at)
        self._starting[account] = at
        await self._save_grace(account, at)

    async def _save_grace(self, account: str, at: float) -> None:
        try:
            recorded = await self.accounts.start_grace(account, at)
        except StorageError as exc:
            event(log, "grace_not_saved", logging.WARNING, account=account, error=exc)
            return  # kept in _starting; the next refresh tries again
        if self._starting.get(account) == at:
            del self._starting[account]
        event(log, "grace_started", account=account, at=recorded)
        licence = self.licences.get(account)
        if licence is not None and recorded is not None:
            self.licences[account] = licence.started(recorded)

    async def refresh(self) -> None:
        """Reload the licences (a grace start not yet saved is kept, and saved now)."""
        for account, at in list(self._starting.items()):
            await self._save_grace(account, at)
        licences = {}
        for account in await self.accounts.list():
            hours = self.grace_hours if account.grace_hours is None else account.grace_hours
            licence = Licence(account.name, account.licence, hours, account.grace_started_at)
            if account.name in self._starting:
                licence = licence.started(self._starting[account.name])
            licences[account.name] = licence
        self.licences = licences

    async def flush(self) -> None:
        """Write the audit rows gathered so far (kept for the next try if the database fails)."""
        if not self._audit:
            return
        rows, self._audit = self._audit, []
        try:
            await self.accounts.add_audit(rows)
        except StorageError as exc:
            event(log, "audit_not_written", logging.WARNING, rows=len(rows), error=exc)
            self._audit[:0] = rows
            del self._audit[:-AUDIT_BACKLOG]

    async def _every(self, seconds: float, work: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except StorageError as exc:
                event(log, "licences_not_refreshed", logging.WARNING, error=exc)

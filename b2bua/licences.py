"""Account licences at the B2BUA: count each account's concurrent calls and
admit or refuse a new one (the rules are in ``sipline.grace``).

The B2BUA asks ``admit(account, call_id)`` before it opens the B leg and
answers 403 with ``Admission.reason`` when the call is not allowed; it calls
``release(account, call_id)`` when the call ends, however it ends.

Counters: each node counts its own calls in memory (``LocalCalls``: a call is
counted once, and forgotten ``max_call_duration`` + a minute after its
admission, should its release be lost). With ``redis.url`` every node also
keeps its count of each account in a Redis hash per account,
``sipline:b2bua:calls:<account>``: field ``NODE.RUN`` its calls,
``NODE.RUN:exp`` until when that count holds. A node writes only its own
fields, and always its absolute count, never a change: one Lua script adds
up the other nodes' live counts and this node's, and takes the call when
there is room, atomically, so two nodes never both take the last licensed
call; every second (``SYNC_INTERVAL``) each node writes its counts again with
a fresh expiry. So a Redis that restarted (empty, or from an old snapshot)
holds every node's calls again within a second, and a node that died stops
counting after ``NODE_TTL`` seconds.

Licences (the accounts table) are cached and reloaded when an operator
command changes them (sipline.cluster.changes pushes it, topic ``accounts``)
and every ``refresh`` seconds (``admin.config_poll``) as a safety net; the start of a grace period is written through at once (the first
node to write it wins, the others adopt its time). Audit rows are written in
batches in the background, never on a call's path.

A Redis that cannot be reached when the node starts is an error; while it
fails later, calls are judged by this node's own calls plus the other
nodes' as last seen (logged once, counted in ``SharedCalls.failures``), and
the counts are written again when it is back: a licence is exceeded at most
by what the other nodes admit during the outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sipline.grace import Counted, Licence, LocalCalls
from sipline.logs import event
from sipline.nodecounts import LIVE_TOTAL, Others, live_total, new_member, own_fields
from sipline.storage.accounts import Accounts, AuditRow
from sipline.storage.database import Database, StorageError, redact
from sipline.storage.live import open_redis

log = logging.getLogger("sipline.b2bua.licences")

KEY_PREFIX = "sipline:b2bua:calls:"
TTL_MARGIN = 60.0  # seconds a call is counted beyond the maximum call duration
NODE_TTL = 10.0  # seconds a node's count holds in Redis without being written again
SYNC_INTERVAL = 1.0  # seconds between writes of a node's counts
REFRESH = 60.0  # seconds between safety-net reloads (changes are pushed)
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
    async def sync(self) -> None: ...
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

    async def sync(self) -> None:
        pass

    async def close(self) -> None:
        pass


# KEYS[1]: the account's calls. ARGV: this node's field, its calls with this one,
# limit (-1: none), now, node TTL. Returns {admitted, the account's calls with this one}.
_ADMIT = (
    LIVE_TOTAL
    + """
local member, own = ARGV[1], tonumber(ARGV[2])
local limit, now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local total = own + live_total(KEYS[1], member, now)
if limit >= 0 and total > limit then
  return {0, total}
end
redis.call('HSET', KEYS[1], member, own, member .. ':exp', string.format('%.3f', now + ttl))
redis.call('EXPIRE', KEYS[1], 3600)
return {1, total}
"""
)


class RedisLost(Exception):
    """Redis answers but has lost another node's count (it restarted): decide here."""


class SharedCalls:
    """Each account's calls across the B2BUA nodes (see the module's doc): this node's
    own in ``LocalCalls``, every node's count in Redis."""

    def __init__(
        self, url: str, ttl: float, *, node: str = "b2bua", clock: Callable[[], float] = time.time
    ) -> None:
        self.url = url
        self.own = LocalCalls(ttl)
        self.member = new_member(node)
        self.clock = clock
        self.client: Any = open_redis(url)
        self._admit = self.client.register_script(_ADMIT)
        self.others: dict[str, Others] = {}  # the other nodes' calls per account, as last read
        self.reserved: dict[str, int] = {}  # admissions out to Redis, per account
        self.failures = 0  # Redis calls that failed: judged by this node's picture
        self.ok = True
        self._unread: set[str] = set()  # accounts first admitted since the last sync

    async def check(self) -> None:
        """StorageError naming ``redis.url`` unless Redis answers (a node checks at start)."""
        try:
            await self.client.ping()
        except Exception as exc:
            where = redact(self.url)
            raise StorageError(f"redis.url {where}: Redis cannot be reached: {exc}") from None

    def _calls(self, account: str) -> int:
        """This node's calls of ``account``, those being admitted included."""
        return self.own.held(account) + self.reserved.get(account, 0)

    def _others(self, account: str) -> Others:
        others = self.others.get(account)
        if others is None:
            others = self.others[account] = Others()
            self._unread.add(account)  # read at the next sync
        return others

    async def admit(self, account: str, call_id: str, limit: int | None, now: float) -> Counted:
        mine = self.own.count(account, now)  # (calls long forgotten dropped first)
        others = self._others(account)
        if self.own.holds(account, call_id):  # counted already: nothing changes
            return Counted(True, mine + others.total, False)
        self.reserved[account] = self.reserved.get(account, 0) + 1
        own = self._calls(account)
        try:
            if others.assumed:
                raise RedisLost
            admitted, total = await self._admit(
                keys=[KEY_PREFIX + account],
                args=[self.member, own, -1 if limit is None else limit, now, NODE_TTL],
            )
            others.total = max(0, int(total) - own)  # Redis's sum now, until the next read
            self._succeeded()
        except Exception as exc:  # Redis away (or it lost counts): this node's picture decides
            if not isinstance(exc, RedisLost):
                self._failed(exc)
            total = own + others.total
            admitted = limit is None or total <= limit
        finally:
            self.reserved[account] -= 1
        if admitted:
            self.own.admit(account, call_id, None, now)
        return Counted(bool(admitted), int(total), True)

    async def release(self, account: str, call_id: str) -> None:
        self.own.release(account, call_id)
        now = self.clock()
        try:  # at once, so the other nodes see the room now, not at the next sync
            await self.client.hset(KEY_PREFIX + account, mapping=self._fields(account, now))
            self._succeeded()
        except Exception as exc:
            self._failed(exc)

    def _fields(self, account: str, now: float) -> dict[str, str | int]:
        return own_fields(self.member, self._calls(account), now + NODE_TTL)

    async def sync(self) -> None:
        """Write this node's count of every account it holds calls of, read the others';
        never raises (Redis away: the next sync writes them)."""
        now = self.clock()
        unread, self._unread = self._unread, set()
        held = {*self.own.accounts(), *unread}
        held |= {account for account, others in self.others.items() if others.total}
        accounts = sorted(held)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for account in accounts:
                    key = KEY_PREFIX + account
                    if self._calls(account):
                        pipe.hset(key, mapping=self._fields(account, now))
                        pipe.expire(key, 3600)
                    else:
                        pipe.hdel(key, self.member, f"{self.member}:exp")
                    pipe.hgetall(key)
                replies = await pipe.execute()
        except Exception as exc:
            self._failed(exc)
            self._unread |= unread
            return
        self._succeeded()
        reads = [r for r in replies if isinstance(r, dict)]
        for account, fields in zip(accounts, reads, strict=True):
            others = self.others.setdefault(account, Others())
            others.read(fields, now, self.member)
            if not (others.total or self._calls(account) or account in self._unread):
                del self.others[account]  # nobody's calls: forgotten until it has some

    async def counts(self, accounts: Iterable[str], now: float) -> dict[str, int]:
        return await shared_counts(self.client, accounts, now)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.ok:
            self.ok = False
            event(log, "licence_counts_unshared", logging.WARNING, error=repr(exc))

    def _succeeded(self) -> None:
        if not self.ok:
            self.ok = True
            event(log, "licence_counts_shared_again", failures=self.failures)

    async def close(self) -> None:
        """Drop this node's counts (its calls are gone with it), let go of Redis."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for account in {*self.others, *self.own.accounts()}:
                    pipe.hdel(KEY_PREFIX + account, self.member, f"{self.member}:exp")
                await pipe.execute()
        except Exception as exc:
            self._failed(exc)
        await self.client.aclose()


async def shared_counts(client: Any, accounts: Iterable[str], now: float) -> dict[str, int]:
    """Every account's calls up across the B2BUA nodes, as Redis holds them."""
    names = list(accounts)
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(KEY_PREFIX + name)
        found = await pipe.execute()
    return {name: live_total(fields, now) for name, fields in zip(names, found, strict=True)}


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
        self.refused = 0  # calls refused over their licence
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
        node = settings.node.name
        url = settings.redis.url
        counter: Counter = SharedCalls(url, ttl, node=node) if url else InProcess(ttl)
        licences = cls(
            db, counter, grace_hours=settings.b2bua.grace_hours, node=node,
            refresh=settings.admin.config_poll,
        )  # fmt: skip
        try:
            if isinstance(counter, SharedCalls):
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
        self._tasks.append(loop.create_task(self._every(SYNC_INTERVAL, self.counter.sync)))

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
        if not verdict.allowed:
            self.refused += 1
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

"""What every role runs beside its node to be one member of the cluster:

- its name (``node_settings``: ``[node] name``, else ROLE@HOST:PORT), on
  every log line;
- its state (sipline.cluster.state), from what the role says (``syncing``,
  ``figures``) and what an admin asked (drain, resume);
- its admin endpoint (sipline.net.admin) on ``[metrics] host:port``:
  GET /status and /metrics, the role's views, POST /drain, /resume, /config;
- its row in the ``nodes`` table, and with ``[redis] url`` its heartbeat;
- the configuration feed (sipline.cluster.feed) with the role's reloads.

The role fills in ``figures`` (what it holds and counts), ``drains`` (how its
node stops taking new work and takes it again) and ``feed.on(topic, reload)``,
then ``run_until_stopped`` (sipline.net.serving) opens the member before the
role starts and closes it after the role stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sipline import __version__, logs
from sipline.cluster import client, registry
from sipline.cluster.changes import Change
from sipline.cluster.feed import ConfigFeed
from sipline.cluster.heartbeat import STOPPED, Heartbeat
from sipline.cluster.key import admin_key
from sipline.cluster.report import Report
from sipline.cluster.state import Lifecycle, Rate, State
from sipline.logs import event
from sipline.net.admin import AdminRequest, AdminServer, Refusal
from sipline.storage.database import Database, StorageError
from sipline.storage.live import open_redis

log = logging.getLogger("sipline.cluster")

STARTING = "start-up"  # what a node is syncing until its role has started


@dataclass(slots=True)
class Figures:
    """What a role reports at a glance; None where the role has no such thing."""

    calls: int | None = None  # in progress
    calls_total: int | None = None  # started since the node started (for calls per second)
    registrations: int | None = None
    gateways_up: int | None = None
    gateways_down: int | None = None
    sessions: int | None = None
    holding: bool = False  # work in progress that a drain waits for
    capacity: str = ""  # why a limit refused work lately ("" when none did)


def node_settings(settings: Any, role: str, address: str) -> Any:
    """``settings`` with ``node.name`` filled in: as configured, else ROLE@HOST:PORT."""
    if settings.node.name:
        return settings
    node = settings.node.model_copy(update={"name": f"{role}@{address}"})
    return settings.model_copy(update={"node": node})


@dataclass(slots=True)
class Drain:
    """How a role's node stops taking new work (``stop(retry_after)``) and takes it again."""

    stop: Callable[[int], None]
    resume: Callable[[], None]

    @classmethod
    def sip(cls, node: Callable[[], Any]) -> Drain:
        """A SIP node's: its transaction layer answers new requests 503 with Retry-After
        (in-dialog requests and CANCELs go on); ``node()`` is None until the role made it."""

        def stop(retry_after: int) -> None:
            if (n := node()) is not None:
                n.layer.drain(retry_after)

        def resume() -> None:
            if (n := node()) is not None:
                n.layer.resume()

        return cls(stop, resume)


class Member:
    def __init__(self, settings: Any, role: str, address: str, db: Database | None) -> None:
        self.settings = settings
        self.role = role
        self.address = address
        self.name: str = settings.node.name or f"{role}@{address}"
        self.db = db
        self.lifecycle = Lifecycle(syncing={STARTING})
        self.figures: Callable[[], Figures] = Figures
        self.drains: list[Drain] = []
        self.started_at = time.time()
        self._rate = Rate()
        redis_url = settings.redis.url
        self.redis = open_redis(redis_url) if redis_url else None
        self.feed = (
            ConfigFeed(db, self.name, poll=settings.admin.config_poll, redis=self.redis)
            if db is not None
            else None
        )
        metrics = settings.metrics
        self.admin = AdminServer(metrics.host, metrics.port)
        self._heartbeat: Heartbeat | None = None
        self.cps = 0.0  # the last calls per second reported

    # -- what the role says -----------------------------------------------------------------
    def syncing(self, what: str) -> None:
        self.lifecycle.syncing.add(what)

    def synced(self, what: str) -> None:
        self.lifecycle.syncing.discard(what)

    def state(self) -> State:
        figures = self.figures()
        return self.lifecycle.state(figures.holding, figures.capacity)

    def report(self) -> Report:
        f = self.figures()
        now = time.time()
        cps = None if f.calls_total is None else round(self._rate.sample(f.calls_total, now), 2)
        self.cps = cps or 0.0
        feed = self.feed
        return Report(
            name=self.name, role=self.role, address=self.address, admin=self.admin.address,
            version=__version__, started_at=self.started_at,
            state=self.lifecycle.state(f.holding, f.capacity).value,
            detail=self.lifecycle.detail(f.capacity), calls=f.calls, cps=cps,
            registrations=f.registrations, gateways_up=f.gateways_up,
            gateways_down=f.gateways_down, sessions=f.sessions,
            config_version=feed.applied if feed is not None else None,
            last_error=feed.last_error if feed is not None else "", at=now,
        )  # fmt: skip

    # -- life -------------------------------------------------------------------------------
    async def open(self) -> None:
        """Before the role starts: the admin endpoint (the node shows ``syncing``),
        its row in ``nodes``, the version it starts from, its heartbeat."""
        logs.set_node(self.name)
        _MEMBERS.append(self)
        self.admin.key = admin_key(self.settings, create=True)
        self.admin.view("/status", self._status)
        self.admin.action("/drain", self._drain)
        self.admin.action("/resume", self._resume)
        self.admin.action("/config", self._config)
        await self.admin.start()
        if self.db is not None:
            await self._check_unique(self.db)
            await registry.record(self.db, self._entry())
        if self.feed is not None:
            await self.feed.begin()
        if self.redis is not None:
            self._heartbeat = Heartbeat(self.redis, self.name, self.report)
            self._heartbeat.start()
            if self.feed is not None:
                self.feed.changed = self._heartbeat.nudge
        event(log, "node_registered", role=self.role, address=self.address,
              admin=self.admin.address, version=__version__)  # fmt: skip

    def running(self) -> None:
        """The role has started: the start-up sync is over, changes are followed."""
        self.synced(STARTING)
        if self.feed is not None:
            self.feed.start()

    def stopping(self) -> None:
        """A shutdown drains like an admin's drain (the role's own stop does the work)."""
        self.lifecycle.drained = True

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.close()
        last = Report.silent(
            self.name, self.role, self.address, self.admin.address, State.STOPPED_BY_ADMIN, STOPPED
        )
        if self._heartbeat is not None:
            await self._heartbeat.close(last)
        if self.db is not None:
            try:
                await registry.mark_stopped(self.db, self.name)
            except Exception as exc:  # the database may be what failed
                event(log, "node_not_unregistered", logging.WARNING, error=repr(exc))
        await self.admin.close()
        _MEMBERS.remove(self)
        logs.set_node("")
        if self.redis is not None:
            await self.redis.aclose()

    async def _check_unique(self, db: Database) -> None:
        """StorageError when another node that runs now has this name: two nodes
        sharing one would write each other's row, heartbeat and bindings."""
        for entry in await registry.entries(db):
            if entry.name != self.name or entry.stopped or entry.address == self.address:
                continue  # our own row (a restart), or a node that stopped
            answer = await client.get(entry.admin, "/status", timeout=0.5)
            if answer is not None and answer.ok and isinstance(answer.body, dict):
                if answer.body.get("name") == self.name:
                    await self.admin.close()
                    raise StorageError(
                        f"node name {self.name} is taken by the node at {entry.address} (admin"
                        f" {entry.admin}): give this one another [node] name"
                    )

    def _entry(self) -> registry.Entry:
        return registry.Entry(
            self.name, self.role, self.address, self.admin.address, __version__,
            self.started_at, None,
        )  # fmt: skip

    # -- the admin endpoint -------------------------------------------------------------------
    async def _status(self, request: AdminRequest) -> dict[str, Any]:
        return self.report().to_json()

    def addressed(self, request: AdminRequest) -> dict[str, Any]:
        """The JSON body of an action, which must name this node (the role's actions too)."""
        return self._addressed(request)

    def _addressed(self, request: AdminRequest) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            raise Refusal(400, "malformed", "the body is not JSON") from None
        if not isinstance(body, dict) or body.get("node") != self.name:
            # The token covers the body: one made for another node is no good here.
            raise Refusal(403, "wrong_node", f"this is node {self.name}")
        return body

    async def _drain(self, request: AdminRequest) -> dict[str, Any]:
        self._addressed(request)
        self.drain()
        return self.report().to_json()

    async def _resume(self, request: AdminRequest) -> dict[str, Any]:
        self._addressed(request)
        self.resume()
        return self.report().to_json()

    async def _config(self, request: AdminRequest) -> dict[str, Any]:
        body = self._addressed(request)
        if self.feed is None:
            raise Refusal(409, "", "this node has no configuration to apply")
        try:
            change = Change.from_json(body)
        except ValueError as exc:
            raise Refusal(400, "malformed", str(exc)) from None
        error = await self.feed.apply(change)
        if error:
            raise Refusal(409, "", error)
        return {"node": self.name, "applied": self.feed.applied}

    def _changed(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.nudge()

    def drain(self) -> None:
        """Take no new work (503 with Retry-After); what is held ends on its own."""
        self.lifecycle.drained = True
        for drain in self.drains:
            drain.stop(self.settings.node.drain_retry_after)
        self._changed()
        event(log, "node_drained", state=self.state().value)

    def resume(self) -> None:
        self.lifecycle.drained = False
        for drain in self.drains:
            drain.resume()
        self._changed()
        event(log, "node_resumed", state=self.state().value)


_MEMBERS: list[Member] = []  # the open members of this process (one, but for tests)


class _MemberCollector(Collector):
    """The node's name, role, version, state, configuration and call rate at /metrics."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        members = list(_MEMBERS)
        info = GaugeMetricFamily(
            "sipline_node_info", "This node: 1, labelled", labels=["node", "role", "version"]
        )
        states = GaugeMetricFamily(
            "sipline_node_state", "1 for the node's state, 0 for the others",
            labels=["node", "state"],
        )  # fmt: skip
        config = GaugeMetricFamily(
            "sipline_node_config_version", "The configuration version applied", labels=["node"]
        )
        cps = GaugeMetricFamily(
            "sipline_node_calls_per_second", "New calls per second, over 10 s", labels=["node"]
        )
        changes = CounterMetricFamily(
            "sipline_config_changes", "Configuration changes applied or failed",
            labels=["node", "outcome"],
        )  # fmt: skip
        for m in members:
            info.add_metric([m.name, m.role, __version__], 1)
            now = m.state()
            for state in State:
                states.add_metric([m.name, state.value], float(state is now))
            cps.add_metric([m.name], m.cps)
            if m.feed is not None:
                config.add_metric([m.name], m.feed.applied or 0)
                for outcome, count in m.feed.counts.items():
                    changes.add_metric([m.name, outcome], count)
        yield from (info, states, config, cps, changes)


REGISTRY.register(_MemberCollector())

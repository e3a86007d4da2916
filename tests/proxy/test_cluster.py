"""Proxies sharing a location: who keeps a dead proxy's bindings, how the others reach a
phone's flow, the liveness they decide by (a real Redis), and the secret a cluster needs."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.cluster import Cluster, check_cluster_node, keeper
from proxy.location import Binding
from sipline.cluster.heartbeat import Heartbeat, Liveness
from sipline.cluster.report import Report
from sipline.cluster.state import State
from sipline.config import ConfigError, Settings
from sipline.proxying.flows import HELD, decode_flow
from sipline.proxying.rules import route_params
from sipline.proxying.signing import Signer
from sipline.sip.address import Address
from sipline.storage.live import open_redis

SIGNER = Signer.from_secret("shared")


class Seen:
    """What a Liveness saw: ``alive``, and ``dead`` (beat once, silent since)."""

    def __init__(self, *alive: str, dead: tuple[str, ...] = ()) -> None:
        self.alive = frozenset(alive)
        self.members = self.alive | set(dead)


def binding(node: str = "p1", proxy: str = "127.0.0.1:5060", **fields: object) -> Binding:
    values: dict[str, object] = {
        "aor": "alice@example.com", "contact": "sip:alice@10.0.0.5:5060",
        "expires_at": time.time() + 60, "source": Address("TCP", "198.51.100.7", 40312),
        "node": node, "proxy": proxy,
    }  # fmt: skip
    values.update(fields)
    return Binding(**values)  # type: ignore[arg-type]


def test_a_live_node_keeps_its_own_bindings() -> None:
    assert keeper("p1", ["p1", "p2", "p3"]) == "p1"
    assert keeper("p1", []) is None


def test_a_dead_nodes_bindings_go_to_one_live_node_whoever_asks() -> None:
    alive = ["p2", "p3", "p4"]
    chosen = keeper("p1", alive)
    assert chosen in alive
    assert keeper("p1", list(reversed(alive))) == chosen  # the order seen does not matter
    views = [Cluster(n, Seen(*alive, dead=("p1",)), SIGNER) for n in alive]
    assert [c.keeps("p1") for c in views].count(True) == 1
    # Another death moves only the dead one's share.
    others = [n for n in alive if n != chosen]
    assert keeper("p1", [chosen, others[0]]) == chosen


def test_a_dead_node_is_adopted_by_exactly_one_of_the_survivors() -> None:
    dead = [f"dead{n}" for n in range(20)]
    views = [Cluster(n, Seen("p1", "p2", "p3", dead=tuple(dead)), SIGNER) for n in ("p1", "p2", "p3")]
    adopted = [set(c.adopted(dead)) for c in views]
    assert set().union(*adopted) == set(dead)
    assert sum(len(a) for a in adopted) == len(dead)
    assert all(adopted)  # spread: each took some of twenty


def test_a_node_never_seen_beating_is_taken_for_alive() -> None:
    """It may have started after our last look: its bindings stay its own."""
    cluster = Cluster("p2", Seen("p2"), SIGNER)
    assert not cluster.keeps("p9") and not cluster.dead("p9")
    assert cluster.target(binding(node="p9", proxy="127.0.0.9:5060"), "c") is not None


def test_alone_a_proxy_keeps_only_what_it_took() -> None:
    cluster = Cluster("p1", None, SIGNER)
    assert cluster.keeps("p1") and not cluster.keeps("p2")
    assert cluster.target(binding(node="p2", proxy="127.0.0.2:5060"), "c") is None


def test_a_phone_whose_flow_another_live_proxy_holds_is_reached_through_it() -> None:
    cluster = Cluster("p2", Seen("p1", "p2"), SIGNER)
    cluster.address = "127.0.0.2:5060"
    target = cluster.target(binding(), "call-1")
    assert target is not None
    assert target.dest == Address("UDP", "127.0.0.1", 5060)
    assert target.uri == "sip:alice@10.0.0.5:5060" and not target.flow
    (route,) = target.routes
    params = route_params(route.strip("<>"))
    assert decode_flow(params[HELD]) == Address("TCP", "198.51.100.7", 40312)
    # Signed for this call only: the holder believes it for call-1, not for another.
    assert SIGNER.verify(params, "call-1") is True
    assert SIGNER.verify(params, "call-2") is False
    assert Signer.from_secret("other").verify(params, "call-1") is False


def test_our_own_or_a_dead_holders_binding_is_reached_from_here() -> None:
    cluster = Cluster("p2", Seen("p1", "p2", dead=("p3",)), SIGNER)
    cluster.address = "127.0.0.2:5060"
    assert cluster.target(binding(node="p2", proxy="127.0.0.2:5060"), "c") is None
    dead = binding(node="p3", proxy="127.0.0.3:5060", nat=True)
    assert cluster.target(dead, "c") is None  # from here, at the address it registered from
    assert cluster.target(binding(path=("<sip:edge.example.net;lr>",)), "c") is None


def test_a_workers_udp_flow_is_reached_from_any_worker_and_a_tcp_one_through_it() -> None:
    """Workers share the address a phone's NAT lets in: a UDP flow another worker
    took is reached from here; its TCP connection only through that worker."""
    cluster = Cluster("p/1", Seen("p/0", "p/1"), SIGNER)
    cluster.address = "127.0.0.1:40001"
    cluster.set_siblings([Address("UDP", "127.0.0.1", 40000)])
    udp = binding(node="p/0", proxy="127.0.0.1:40000", source=Address("UDP", "198.51.100.7", 5060))
    assert cluster.target(udp, "c") is None
    tcp = cluster.target(binding(node="p/0", proxy="127.0.0.1:40000"), "c")
    assert tcp is not None and tcp.dest == Address("UDP", "127.0.0.1", 40000)


def test_a_sibling_is_known_by_host_and_port() -> None:
    cluster = Cluster("p/1", None, SIGNER)
    assert not cluster.is_sibling(Address("UDP", "127.0.0.1", 40000))
    cluster.set_siblings([Address("UDP", "127.0.0.1", 40000)])
    assert cluster.is_sibling(Address("UDP", "127.0.0.1", 40000))
    assert not cluster.is_sibling(Address("UDP", "127.0.0.2", 40000))
    assert not cluster.is_sibling(Address("UDP", "127.0.0.1", 40002))
    assert not cluster.is_sibling(Address("TCP", "127.0.0.1", 40000))


def test_a_tcp_phone_whose_holder_died_is_reached_at_its_contact_unless_behind_nat() -> None:
    """Its flow died with the proxy that held it (the source port was the connection's):
    a phone not behind NAT listens at its Contact, as baresip with two outbound
    proxies does; one behind NAT is reached again once it registers anew."""
    cluster = Cluster("p2", Seen("p1", "p2", dead=("p3",)), SIGNER)
    cluster.address = "127.0.0.2:5060"
    tcp = binding(node="p3", proxy="127.0.0.3:5060", contact="sip:alice@10.0.0.5:5070;transport=tcp")
    target = cluster.target(tcp, "c")
    assert target is not None and target.dest == Address("TCP", "10.0.0.5", 5070)
    assert target.uri == tcp.contact and not target.flow and not target.routes
    assert cluster.target(binding(node="p3", proxy="127.0.0.3:5060", nat=True), "c") is None
    udp = binding(node="p3", proxy="127.0.0.3:5060", source=Address("UDP", "10.0.0.5", 5060))
    assert cluster.target(udp, "c") is None  # its source is its address: tried from here
    assert cluster.target(binding(node="p1", proxy="127.0.0.1:5060", nat=False), "c") is not None


def test_a_cluster_node_without_a_secret_does_not_start() -> None:
    settings = Settings(redis={"url": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ConfigError, match=r"auth\.secret: must be set"):
        check_cluster_node(settings)
    check_cluster_node(Settings(redis={"url": "redis://127.0.0.1:6379/0"}, auth={"secret": "s"}))
    check_cluster_node(Settings())  # alone, the random secret is fine


async def test_a_silent_node_is_dead_after_the_silence(redis_url: str) -> None:
    """The proxies' liveness is the cluster's heartbeats (one for every role): a proxy
    whose heartbeat stops is dead after the silence; other roles' nodes are not proxies."""
    redis = open_redis(redis_url)
    beats = {
        name: Heartbeat(redis, name, lambda n=name, r=role: _report(n, r), silence=0.5)
        for name, role in (("p1", "proxy"), ("p2", "proxy"), ("b1", "b2bua"))
    }
    seen = Liveness(redis, "proxy", "p1")
    try:
        for beat in beats.values():
            await beat.beat()
        await seen.look()
        assert seen.alive == {"p1", "p2"} and seen.members == {"p1", "p2"}
        await asyncio.sleep(0.6)  # p2 says nothing more (SIGKILL); p1 is us, running
        await seen.look()
        assert seen.alive == {"p1"} and seen.members == {"p1", "p2"}
        await beats["p2"].beat()  # back
        await seen.look()
        assert seen.alive == {"p1", "p2"}
        await beats["p2"].close(_report("p2", "proxy"))  # a clean stop is seen at once
        await seen.look()
        assert seen.alive == {"p1"}
    finally:
        await redis.aclose()


def _report(name: str, role: str) -> Report:
    return Report.silent(name, role, "127.0.0.1:5060", "", State.RUNNING, "")

"""The relay's media figures reach the carrier's statistics through the router.

In the full chain the relay anchors a call's media under the B2BUA's A-leg
Call-ID (b2bua.media names the ng call so) and publishes its figures under
``sipline:relay:call:<that Call-ID>``; the ACR sees only the B leg, whose
Call-ID differs. The B2BUA says which Call-ID the relay knows the call by in
X-Sipline-Media-Call; the router keeps it until the BYE and the statistics
fetch the relay's hash by it. Here the hash is written by the relay's own
writer (relay.publish), one real Redis between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from acr.ranking import RouteTable
from acr.router import AcrRouter
from acr.stats import CarrierStats, open_stats
from relay.publish import CallQuality, RedisQuality, StreamQuality
from sipline.carriers.model import Carrier, Gateway, Rate
from sipline.config import Settings
from tests.acr.test_router import US, Acr, Cdrs, Counters, FakeNode, Health
from tests.support import FakeClock

AT = 1_700_000_000.0
CARRIER = Carrier("good", (Gateway("good", "127.0.0.2", 5060),))
A_LEG = "a-leg-1@192.0.2.10"  # the phone's Call-ID, which the B2BUA's A leg keeps
B_LEG = "b-leg-1@127.0.0.1"  # the B2BUA's own, towards the ACR


@dataclass
class Live:
    stats: CarrierStats
    health: Health = field(default_factory=Health)
    counters: Counters = field(default_factory=Counters)


def relay_figures(call_id: str) -> CallQuality:
    streams = tuple(
        StreamQuality(tag, 0, "audio", "PCMU", 500, 80_000, lost, 500, jitter, mos)
        for tag, lost, jitter, mos in (("a1", 5, 4.0, 4.2), ("c1", 10, 9.0, 3.9))
    )
    return CallQuality(call_id, "deleted", AT, streams)


async def test_the_relays_figures_for_the_a_leg_become_the_carriers_media_quality(
    redis_url: str,
) -> None:
    clock = FakeClock()
    clock.now = AT
    stats = open_stats(redis_url, 3600.0, clock=clock)
    settings = Settings(
        sip={"host": US.host, "port": US.port},
        acr={"trusted": ["127.0.0.1:5070"], "exploration": 0},
    )
    router = AcrRouter(
        settings, "primary", RouteTable([CARRIER], [Rate("good", "44", 0.01)], now=AT),
        Live(stats), Cdrs(), [CARRIER], clock=clock, monotonic=clock,
    )  # fmt: skip
    acr = Acr(router, FakeNode(), router.live, router.cdrs, clock)  # type: ignore[arg-type]
    writer = RedisQuality(Redis.from_url(redis_url))
    try:
        acr.invite(call_id=B_LEG, extra=f"X-Sipline-Media-Call: {A_LEG}\r\n")
        [sent] = acr.node.invites
        acr.answer(sent, 200)
        clock.now += 30
        acr.bye(B_LEG)
        await writer.write(relay_figures(A_LEG))  # the relay, when the B2BUA deletes the call
        await stats.sync()
        assert stats.quality("good", "44").mos is None  # fetched a little after the BYE
        clock.now += stats.MEDIA_DELAY
        await stats.sync()
        figures = stats.quality("good", "44")
        assert figures.mos == 3.9  # the worse direction
        assert figures.jitter == 9.0
        assert figures.loss == 15 / 1000
        assert figures.acd_mean == 30.0
    finally:
        await writer.client.aclose()
        await stats.close()

"""Per-call quality for the ACR (relay.publish): in process, and in a real Redis.

The Redis tests start a private redis-server on a free port (failing, never
skipping, when it is not installed).
"""

from __future__ import annotations

import asyncio
import struct

import orjson
import pytest
from redis.asyncio import Redis

from relay.anchor import MediaSpec
from relay.ports import PortPool
from relay.publish import (
    KEY_PREFIX,
    STREAM,
    CallQuality,
    MemoryQuality,
    RedisQuality,
    open_quality_sink,
)
from relay.sessions import Call, SessionTable
from tests.relay.test_sessions import FakePlane
from tests.support import FakeClock

AT = 1_700_000_000.0


def a_call(lost: set[int] = frozenset()) -> Call:  # type: ignore[assignment]
    """A call A -> B where A sent 100 G.711 packets (minus ``lost``) and B sent none."""
    clock = FakeClock()
    table = SessionTable(PortPool(30000, 30099), FakePlane(), clock=clock)
    spec = MediaSpec("audio", "RTP/AVP", ("10.0.0.1", 4000), ("10.0.0.1", 4001))
    table.offer("call-1", "A", None, [spec])
    table.answer("call-1", "A", "B", [spec])
    call = table.get("call-1")
    assert call is not None
    stream = call.parties[0].media[0].rtp
    for seq in range(100):
        if seq not in lost:
            packet = struct.pack("!BBHII", 0x80, 8, seq, seq * 160, 7) + bytes(160)
            stream.receive(packet, ("10.0.0.1", 4000), 10 + seq * 0.02)
    return call


def test_the_quality_of_a_call_is_what_each_party_sent() -> None:
    quality = CallQuality.of(a_call(lost={3, 4}), "deleted", AT)
    [stream] = quality.streams  # B sent nothing: no figures for it
    assert (stream.tag, stream.index, stream.kind, stream.codec) == ("A", 1, "audio", "PCMA")
    assert (stream.packets, stream.bytes, stream.lost, stream.expected) == (98, 98 * 172, 2, 100)
    assert 3.8 < stream.mos < 4.3 and quality.mos == stream.mos


def test_the_flat_fields_carry_the_summary_and_the_streams_as_json() -> None:
    fields = CallQuality.of(a_call(lost={3}), "timeout", AT).fields()
    assert fields["call-id"] == "call-1" and fields["state"] == "timeout"
    assert (fields["packets"], fields["lost"]) == ("99", "1")
    assert float(fields["mos"]) > 4
    assert orjson.loads(fields["streams"])[0]["tag"] == "A"


def test_a_call_without_media_has_no_mos() -> None:
    quality = CallQuality("c", "deleted", AT, ())
    assert quality.mos is None and quality.fields()["mos"] == ""


def test_in_process_the_latest_figures_of_the_last_calls_are_kept() -> None:
    sink = MemoryQuality(keep=2)
    for n in range(3):
        sink.publish(CallQuality(f"c{n}", "active", AT + n, ()))
    sink.publish(CallQuality("c2", "deleted", AT + 9, ()))
    assert list(sink.calls) == ["c1", "c2"]
    assert sink.get("c2") == CallQuality("c2", "deleted", AT + 9, ())
    assert sink.get("c0") is None


def test_without_a_redis_url_quality_stays_in_process() -> None:
    assert isinstance(open_quality_sink(None), MemoryQuality)
    assert isinstance(open_quality_sink("redis://127.0.0.1:1/0"), RedisQuality)


# -- Redis ---------------------------------------------------------------------------------


async def test_redis_gets_a_hash_per_call_and_an_entry_when_it_ends(redis_url: str) -> None:
    sink = RedisQuality.from_url(redis_url, ttl=600)
    await sink.start()
    call = a_call(lost={5})
    sink.publish(CallQuality.of(call, "active", AT))
    sink.publish(CallQuality.of(call, "deleted", AT + 1))
    await sink.close()
    async with Redis.from_url(redis_url, decode_responses=True) as client:
        stored = await client.hgetall(KEY_PREFIX + "call-1")
        assert stored["state"] == "deleted" and stored["lost"] == "1"
        assert 0 < await client.ttl(KEY_PREFIX + "call-1") <= 600
        [(_, entry)] = await client.xrange(STREAM)  # only the end goes on the stream
        assert entry["call-id"] == "call-1" and entry["state"] == "deleted"


async def test_a_redis_that_is_down_loses_figures_but_never_stops_the_relay(redis_url: str) -> None:
    sink = RedisQuality.from_url(redis_url)
    await sink.start()
    async with Redis.from_url(redis_url) as client:
        await client.shutdown(nosave=True)
    sink.publish(CallQuality("c", "deleted", AT, ()))
    await asyncio.sleep(0.2)
    await sink.close()


async def test_an_unreachable_redis_fails_at_start() -> None:
    sink = RedisQuality.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(OSError, match="Redis for call quality"):
        await sink.start()
    await sink.client.aclose()


async def test_a_full_queue_drops_the_oldest_figures() -> None:
    sink = RedisQuality(Redis.from_url("redis://127.0.0.1:1/0"), queue=2)
    for n in range(5):
        sink.publish(CallQuality(f"c{n}", "active", AT, ()))
    assert sink.dropped == 3
    await sink.client.aclose()

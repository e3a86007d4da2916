"""What relayed calls leave for the cyclic GC (issue 14: no pause, RSS flat).

The proxy breaks the references of each transaction when it ends, so its
call path leaves no cyclic garbage: reference counting frees every call, and
the node's GC thresholds (sipline.net.node.tune_gc) can keep collections
rare. While transactions linger (timers J, K, L, M), their requests keep
their text only.
"""

import gc

from bench.b2bua_profile import Clock
from bench.proxy_profile import relay_call, relay_proxy

CALLS = 20


def test_relayed_calls_leave_no_cyclic_garbage_and_lingering_requests_keep_only_text():
    clock = Clock()
    wire, receive = relay_proxy(clock)
    gc.collect()
    gc.disable()
    try:
        for n in range(CALLS):
            relay_call(wire, receive, n)
            clock.now += 0.01
            wire.tick(clock.now)
            wire.take()
        layer = wire.layer
        lingering = [*layer._servers.values(), *layer._clients.values()]
        assert len(lingering) >= 3 * CALLS  # the INVITEs' both sides, the BYEs' server side
        assert all(txn.request.headers._parsed == {} for txn in lingering)
        clock.now += 40.0  # past timers J, K, L and M
        wire.tick(clock.now)
        assert len(layer) == 0 and not wire.handler.router.accepted
        assert gc.collect() == 0
    finally:
        gc.enable()

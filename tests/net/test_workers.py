"""The pure parts of workers: the spec a supervisor gives, how many run, the
config they need, sealed handovers, a worker's Via, and the merged /metrics."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from sipline.config import ConfigError
from sipline.net import workers
from sipline.net.supervisor import Supervisor, Worker, merge_metrics
from sipline.net.workers import MAX_AGE, Workers, handover_key, seal, unseal
from sipline.proxying.rules import Local, looped
from sipline.sip.address import UDP_FLOW, Address, as_flow
from sipline.sip.message import parse_message

KEY = handover_key("the node secret")
SOURCE = Address("UDP", "192.0.2.7", 5062)
NOW = 1_800_000_000.0


def settings(workers_: int = 0, redis: str = "") -> SimpleNamespace:
    return SimpleNamespace(node=SimpleNamespace(workers=workers_), redis=SimpleNamespace(url=redis))


# -- the spec --------------------------------------------------------------------------
def test_a_spec_reads_back_as_written() -> None:
    given = Workers(1, (40000, 40001, 40002), 9)
    assert Workers.parse(given.spec()) == given
    assert given.own_port == 40001
    assert given.siblings == (40000, 40002)


@pytest.mark.parametrize("text", ["", "2/9/40000,40001", "0/9/", "x/9/40000", "0/9/0", "0/9/70000"])
def test_a_bad_spec_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Workers.parse(text)


# -- how many, and what they need -------------------------------------------------------
def test_the_default_is_a_worker_per_core_with_redis_and_one_without() -> None:
    assert workers.count(settings(redis="redis://127.0.0.1:1/0")) == workers.cores()
    assert workers.count(settings()) == 1
    assert workers.count(settings(3)) == 3


def test_more_than_one_worker_without_redis_fails_naming_the_keys() -> None:
    workers.check(settings(1))
    workers.check(settings(4, "redis://127.0.0.1:1/0"))
    with pytest.raises(ConfigError, match=r"node.workers = 2: .*redis.url"):
        workers.check(settings(2))


def test_the_setting_is_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sipline.config import load_settings

    path = tmp_path / "bad.toml"
    path.write_text("[node]\nworkers = -1\n")
    with pytest.raises(ConfigError, match="node.workers"):
        load_settings(path)


# -- sealed handovers -------------------------------------------------------------------
def test_a_handover_opens_with_its_source() -> None:
    data = b"CANCEL sip:bob@example.com SIP/2.0\r\n\r\n"
    assert unseal(KEY, seal(KEY, SOURCE, data, NOW), NOW + 0.5) == (SOURCE, data)


def test_an_ipv6_source_survives() -> None:
    source = Address("UDP", "2001:db8::7", 5060)
    assert unseal(KEY, seal(KEY, source, b"x", NOW), NOW) == (source, b"x")


def test_a_handover_under_another_key_is_forged() -> None:
    sealed = seal(handover_key("another secret"), SOURCE, b"x", NOW)
    assert unseal(KEY, sealed, NOW) is None


def test_a_changed_source_or_body_is_forged() -> None:
    sealed = seal(KEY, SOURCE, b"CANCEL", NOW)
    assert unseal(KEY, sealed.replace(b"192.0.2.7", b"192.0.2.8"), NOW) is None
    assert unseal(KEY, sealed[:-1] + b"X", NOW) is None
    assert unseal(KEY, sealed[:20], NOW) is None


def test_a_stale_handover_is_refused() -> None:
    sealed = seal(KEY, SOURCE, b"x", NOW)
    assert unseal(KEY, sealed, NOW + MAX_AGE + 0.1) is None
    assert unseal(KEY, sealed, NOW - MAX_AGE - 0.1) is None


def test_sip_is_not_a_handover() -> None:
    assert unseal(KEY, b"SIP/2.0 200 OK\r\n\r\n", NOW) is None


# -- a worker's Via ---------------------------------------------------------------------
US = Address("UDP", "10.0.0.1", 5060)


def worker_local() -> Local:
    vias = {"UDP": US._replace(port=40001), "TCP": US._replace(transport="TCP")}
    addresses = {"UDP": US, "TCP": US._replace(transport="TCP")}
    return Local(addresses, ["example.com"], vias, (40000, 40001))


def test_a_worker_writes_its_own_port_in_via_and_the_shared_one_in_record_route() -> None:
    local = worker_local()
    assert local.via("UDP", "z9hG4bK1").startswith("SIP/2.0/UDP 10.0.0.1:40001;")
    assert local.via("TCP", "z9hG4bK1").startswith("SIP/2.0/TCP 10.0.0.1:5060;")
    assert local.record_route("UDP", "").startswith("<sip:10.0.0.1:5060;lr")


def test_a_siblings_via_is_ours() -> None:
    local = worker_local()
    assert local.sent_by_us("SIP/2.0/UDP 10.0.0.1:40000;branch=z9hG4bK1")
    assert local.sent_by_us("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")
    assert not local.sent_by_us("SIP/2.0/UDP 10.0.0.1:40002;branch=z9hG4bK1")
    assert local.names_us("sip:10.0.0.1:40000;lr")


def test_a_request_looping_through_a_sibling_is_a_loop() -> None:
    request = parse_message(
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:40000;branch=z9hG4bK-abc.loopkey\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-caller\r\n"
        b"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
    )
    assert looped(request, worker_local(), "loopkey")  # type: ignore[arg-type]


def test_a_udp_flow_is_marked_and_a_stream_one_kept() -> None:
    assert as_flow(SOURCE).connection == UDP_FLOW
    tcp = Address("TCP", "192.0.2.7", 5062, 12)
    assert as_flow(tcp) is tcp


# -- /metrics of the workers --------------------------------------------------------------
PAGE = """# HELP sipline_calls_total New calls
# TYPE sipline_calls_total counter
sipline_calls_total {calls}
# HELP sipline_sip_dropped_total Dropped
# TYPE sipline_sip_dropped_total counter
sipline_sip_dropped_total{{reason="flood"}} 1.0
"""


def test_the_workers_metrics_are_one_page_labelled_by_worker() -> None:
    text = merge_metrics({"0": PAGE.format(calls=3), "1": PAGE.format(calls=4)})
    lines = text.splitlines()
    assert lines.count("# TYPE sipline_calls_total counter") == 1
    assert 'sipline_calls_total{worker="0"} 3' in lines
    assert 'sipline_calls_total{worker="1"} 4' in lines
    assert 'sipline_sip_dropped_total{worker="1",reason="flood"} 1.0' in lines
    family = lines.index("# TYPE sipline_sip_dropped_total counter")
    assert lines[family + 1].startswith("sipline_sip_dropped_total{")  # samples follow their head


def test_a_silent_worker_has_no_samples_rather_than_zeros() -> None:
    text = merge_metrics({"1": PAGE.format(calls=4)})
    assert 'worker="0"' not in text


# -- the supervisor's restarts ------------------------------------------------------------
class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)


def supervisor_of(count: int) -> Supervisor:
    supervisor = Supervisor(SimpleNamespace(), "proxy", "p", ["sipline", "proxy"], count)
    supervisor.workers = [Worker(i, f"p/{i}", f"127.0.0.1:{9000 + i}", -1) for i in range(count)]
    pids = iter(range(100, 1000))

    def start(worker: Worker, ports: tuple[int, ...]) -> None:
        worker.process = FakeProcess(next(pids))  # type: ignore[assignment]
        worker.started_at = clock[0]

    supervisor._start = start  # type: ignore[method-assign]
    for worker in supervisor.workers:
        start(worker, ())
    return supervisor


clock = [1000.0]


def test_a_dead_worker_is_started_again_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sipline.net.supervisor.time.time", lambda: clock[0])
    monkeypatch.setattr("sipline.net.supervisor.time.monotonic", lambda: clock[0])
    supervisor = supervisor_of(2)
    first = supervisor.workers[0].process
    clock[0] += 60  # it lived a minute: its death is the first in a row, started at once
    first.returncode = -9  # type: ignore[union-attr]
    supervisor._look(())
    worker = supervisor.workers[0]
    assert worker.process is not first and worker.alive
    assert (worker.restarts, worker.last_exit, supervisor.restarts) == (1, -9, 1)
    sibling = supervisor.workers[1]
    assert sibling.restarts == 0
    # Told twice that the set of sockets changed (the death, the start): ACKs may stray.
    assert sibling.process.signals == [signal.SIGUSR1, signal.SIGUSR1]  # type: ignore[union-attr]


def test_a_worker_that_keeps_dying_is_started_again_later_and_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sipline.net.supervisor.time.time", lambda: clock[0])
    monkeypatch.setattr("sipline.net.supervisor.time.monotonic", lambda: clock[0])
    supervisor = supervisor_of(1)
    worker = supervisor.workers[0]
    delays = []
    for _ in range(6):
        clock[0] += 0.2  # dies at once, again and again
        worker.process.returncode = 1  # type: ignore[union-attr]
        supervisor._look(())
        if worker.process is None:
            delays.append(worker.due - clock[0])
            clock[0] = worker.due
            supervisor._look(())
        else:
            delays.append(0.0)
    assert delays == [0.0, 0.5, 1.0, 2.0, 5.0, 5.0]
    assert worker.restarts == 6

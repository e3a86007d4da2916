"""Two real softphones (baresip) register with digest auth and call each other through the proxy.

Each baresip runs headless from a config directory of its own: ``ausine``
as audio source, no sound card, ``menu`` for the commands and ``ctrl_tcp``
to drive it (JSON in netstrings: commands in, responses and events out).
"""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.proxystack import (
    HOST,
    Phone,
    free_port,
    provision,
    start_proxy,
)

pytestmark = pytest.mark.e2e

ALICE = Phone("alice", "alice-Secret1")
BOB = Phone("bob", "bob-Secret2")
EVENT_TIMEOUT = 15.0

CONFIG = """\
poll_method\tepoll
net_interface\t127.0.0.1
sip_listen\t{host}:{sip_port}
sip_trans_def\tudp
audio_player\taubridge,{name}-out
audio_source\tausine,440
audio_alert\taubridge,{name}-alert
rtp_ports\t{rtp_low}-{rtp_high}
module_path\t/usr/lib/baresip/modules
module\topus.so
module\tg711.so
module\tausine.so
module\taubridge.so
module_app\taccount.so
module_app\tmenu.so
module_app\tctrl_tcp.so
ctrl_tcp_listen\t{host}:{ctrl_port}
"""
ACCOUNT = "<sip:{user}@{domain};transport={transport}>;auth_pass={password}{outbound};regint=600\n"


def outbound(proxies: list[str], transport: str) -> str:
    """baresip's outbound proxies (HOST:PORT), in order: ``outbound`` (its first) and
    ``outbound2`` (baresip 1.0 takes two)."""
    if not 1 <= len(proxies) <= 2:
        raise ValueError(f"baresip takes one or two outbound proxies, not {proxies}")
    names = ("outbound", "outbound2")[: len(proxies)]
    return "".join(
        f';{name}="sip:{proxy};transport={transport}"'
        for name, proxy in zip(names, proxies, strict=True)
    )


class Baresip:
    """One baresip process and its ctrl_tcp connection; events arrive on a queue."""

    def __init__(
        self,
        binary: str,
        phone: Phone,
        proxy_port: int,
        workdir: Path,
        transport: str,
        *,
        config: str = "",
        account: str = "",
        proxies: list[str] | None = None,
    ) -> None:
        """``config`` lines are added to its config, ``account`` parameters to its account;
        ``proxies`` (HOST:PORT) are its outbound proxies (default: HOST:``proxy_port``)."""
        self.phone = phone
        self.directory = workdir / phone.user
        self.directory.mkdir()
        self.sip_port = free_port()  # its + 1 is free too: baresip binds TLS there
        self.ctrl_port = free_port()
        rtp = free_port()
        (self.directory / "config").write_text(
            CONFIG.format(host=HOST, sip_port=self.sip_port, ctrl_port=self.ctrl_port,
                          name=phone.user, rtp_low=rtp, rtp_high=rtp + 10) + config
        )  # fmt: skip
        (self.directory / "accounts").write_text(
            ACCOUNT.format(user=phone.user, domain=phone.domain, password=phone.password,
                           transport=transport,
                           outbound=outbound(proxies or [f"{HOST}:{proxy_port}"], transport))
            .replace("\n", account + "\n")
        )  # fmt: skip
        (self.directory / "contacts").write_text("")
        self.log = self.directory / "baresip.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, "-f", str(self.directory), "-v"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.sock = self._connect()
        threading.Thread(target=self._read, daemon=True).start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"baresip exited {self.process.returncode}:\n{self.log_text()}")
            try:
                return socket.create_connection((HOST, self.ctrl_port), timeout=1)
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"baresip ctrl_tcp never listened:\n{self.log_text()}")

    def _read(self) -> None:
        buffer = b""
        self.sock.settimeout(None)
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b":" in buffer:
                length, _, rest = buffer.partition(b":")
                size = int(length)
                if len(rest) < size + 1:
                    break
                message = json.loads(rest[:size])
                buffer = rest[size + 1 :]  # past the "," that ends a netstring
                (self.events if message.get("event") else self.responses).put(message)

    def command(self, name: str, params: str = "") -> dict[str, Any]:
        body = json.dumps({"command": name, "params": params, "token": name}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        try:
            return self.responses.get(timeout=EVENT_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"{self.phone.user}: no answer to {name}:\n{self.log_text()}")

    def wait_registered(self) -> str:
        """Poll ``reginfo`` until the account shows OK (registration starts before we connect)."""
        deadline = time.monotonic() + EVENT_TIMEOUT
        while time.monotonic() < deadline:
            info = self.command("reginfo")["data"]
            if f"sip:{self.phone.aor}" in info and "OK" in info:
                return info
            time.sleep(0.2)
        pytest.fail(f"{self.phone.user} never registered:\n{self.log_text()}")

    def wait_event(self, kind: str) -> dict[str, Any]:
        """The next event of type ``kind``; events of other types before it are passed over."""
        seen = []
        deadline = time.monotonic() + EVENT_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.events.get(timeout=left)
            except queue.Empty:
                break
            if message.get("type") == kind:
                return message
            seen.append(message.get("type"))
        pytest.fail(f"{self.phone.user}: no {kind} event (saw {seen}):\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        try:
            self.sock.close()
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()


@pytest.fixture
def proxy_port(tmp_path: Path, sqlite_url: str) -> Iterator[int]:
    asyncio.run(provision(sqlite_url, [ALICE, BOB]))
    # baresip 1.0 (libre) gives up on a 401/407 with any challenge that is not MD5.
    proxy = start_proxy(sqlite_url, tmp_path, {"SIPLINE_AUTH__ALGORITHMS": '["MD5"]'})
    try:
        yield proxy.port
    finally:
        proxy.kill()


@pytest.fixture(params=["udp", "tcp"])
def phones(
    baresip_bin: str, proxy_port: int, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Baresip, Baresip]]:
    """alice and bob, registered over ``request.param`` (TCP: calls reach bob on his connection)."""
    started: list[Baresip] = []
    try:
        for phone in (ALICE, BOB):
            started.append(Baresip(baresip_bin, phone, proxy_port, tmp_path, request.param))
        yield started[0], started[1]
    finally:
        for process in started:
            process.stop()


def test_two_baresips_register_call_each_other_and_hang_up(
    phones: tuple[Baresip, Baresip],
) -> None:
    alice, bob = phones
    for phone in phones:
        phone.wait_registered()

    assert alice.command("dial", f"sip:{BOB.aor}")["ok"] is True
    incoming = bob.wait_event("CALL_INCOMING")
    assert incoming["peeruri"] == f"sip:{ALICE.aor}"
    assert bob.command("accept")["ok"] is True
    for phone in phones:
        phone.wait_event("CALL_ESTABLISHED")

    time.sleep(1.0)  # a second of audio from ausine
    assert alice.command("hangup")["ok"] is True
    closed = {phone.phone.user: phone.wait_event("CALL_CLOSED") for phone in phones}
    assert closed["alice"]["param"] == "Connection reset by user"
    assert closed["bob"]["param"] == "Connection reset by peer"

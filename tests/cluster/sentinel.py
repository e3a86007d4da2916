"""A private Redis with Sentinel: a master, a replica of it and one sentinel watching
them (quorum 1), each a redis-server process of ours on 127.0.0.1; ``url`` is the
``redis+sentinel://`` URL every node is given. Killing the master makes the
sentinel promote the replica within a few seconds."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from sipline.net.ports import free_port

MASTER = "sipline"


class RedisSentinel:
    def __init__(self, redis_server: str) -> None:
        self.binary = redis_server
        self.directory = Path(tempfile.mkdtemp(prefix="sipline-sentinel-"))
        self.master_port, self.replica_port, self.sentinel_port = (free_port() for _ in range(3))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER}/0"

    def start(self) -> None:
        # --dir: a replica's first sync has the master write a snapshot there.
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self._spawn("master", [self.binary, "--port", str(self.master_port), *common])
        self._spawn("replica", [self.binary, "--port", str(self.replica_port), *common,
                                "--replicaof", "127.0.0.1", str(self.master_port)])  # fmt: skip
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        self._spawn("sentinel", [self.binary, str(config), "--sentinel"])
        self.wait(lambda: self.replica_synced(), 15, "the replica did not sync")
        self.wait(lambda: self.sentinel_sees_replica(), 15, "the sentinel did not find the replica")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.directory / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        port = int(command[command.index("--port") + 1]) if "--port" in command else (
            self.sentinel_port)  # fmt: skip
        self.wait(lambda: _answers(port), 10, f"redis {name} did not start")

    def master(self) -> tuple[str, int] | None:
        with redis.Redis(port=self.sentinel_port, socket_timeout=1) as sentinel:
            answer = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        return None if not answer else (answer[0].decode(), int(answer[1]))

    def replica_synced(self) -> bool:
        with redis.Redis(port=self.replica_port, socket_timeout=1) as replica:
            return replica.info("replication").get("master_link_status") == "up"

    def sentinel_sees_replica(self) -> bool:
        with redis.Redis(port=self.sentinel_port, socket_timeout=1) as sentinel:
            return bool(sentinel.execute_command("SENTINEL", "replicas", MASTER))

    def kill_master(self) -> float:
        """SIGKILL the master; the seconds until the sentinel names the replica instead."""
        self.processes["master"].send_signal(signal.SIGKILL)
        self.processes["master"].wait(5)
        started = time.monotonic()
        self.wait(lambda: self.master() == ("127.0.0.1", self.replica_port), 30,
                  "the sentinel did not promote the replica")  # fmt: skip
        return time.monotonic() - started

    @staticmethod
    def wait(condition: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(what)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False

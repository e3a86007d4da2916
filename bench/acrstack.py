"""The ACR under load or test: carriers and decks in a database, ``sipline acr``,
sipp UAS "carriers" behind it.

The end-to-end tests (tests/e2e/test_acr_sipp.py) and the ``acr`` bench
scenario (``bench.acrserve``) share these parts: ``SippCarrier`` (a sipp
UAS answering as a carrier's gateway, OPTIONS probes included),
``provision`` (carriers, their one-row decks, profiles and DIDs written
through the ACR's store), ``acr_env`` (the environment that points
``sipline acr`` at a port, a database and a Redis) and ``acr_command``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sipline.carriers.deck import deck_text, parse_deck, write_deck
from sipline.carriers.model import Carrier, Did, Gateway, RoutingProfile
from sipline.carriers.store import AcrStore
from sipline.net.ports import free_port
from sipline.storage import migrate, open_database

REPO = Path(__file__).resolve().parents[1]
SIPLINE = Path(sys.executable).parent / "sipline"
HOST = "127.0.0.1"
UAS_TIMEOUT = "3600s"  # a UAS left behind by a killed test or helper still ends


@dataclass
class SippCarrier:
    """A carrier with one gateway: a sipp UAS on ``port`` running ``scenario``."""

    name: str
    rate: float  # per minute, for every number under ``prefix``
    scenario: Path
    prefix: str = "44"
    connect_fee: float = 0.0
    increments: tuple[int, int] = (6, 6)
    keys: Mapping[str, str] = field(default_factory=dict)  # sipp -key NAME VALUE
    port: int = field(default_factory=lambda: free_port(HOST))
    capacity: int | None = None  # the carrier's concurrent calls across the ACR nodes
    messages: Path | None = None  # sipp's -trace_msg file: every message it received and sent
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def carrier(self) -> Carrier:
        return Carrier(self.name, (Gateway(self.name, HOST, self.port),), capacity=self.capacity)

    def start(self, sipp: str, workdir: Path) -> None:
        """Start (or restart) the UAS on its port."""
        workdir.mkdir(parents=True, exist_ok=True)
        extra = [arg for name, value in self.keys.items() for arg in ("-key", name, value)]
        if self.messages is not None:
            extra += ["-trace_msg", "-message_file", str(self.messages)]
        self.process = subprocess.Popen(
            [sipp, "-sf", str(self.scenario), "-i", HOST, "-p", str(self.port),
             "-m", "10000000", "-timeout", UAS_TIMEOUT, "-nostdin", *extra,
             "-trace_err", "-error_file", str(workdir / f"{self.name}-errors.log")],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.kill()  # as a crashed gateway: no goodbye
        process.wait(5)


async def provision(
    url: str,
    carriers: Sequence[SippCarrier],
    profiles: Iterable[RoutingProfile] = (),
    dids: Iterable[Did] = (),
) -> None:
    """Migrate the database at ``url`` and store the carriers, a one-row deck each, profiles, DIDs."""
    db = await open_database(url)
    try:
        await migrate(db)
        store = AcrStore(db)
        for sipp in carriers:
            await store.add_carrier(sipp.carrier)
            first, following = sipp.increments
            text = deck_text(
                [(sipp.prefix, sipp.rate, sipp.connect_fee, first, following)],
                ("prefix", "rate", "connect_fee", "first_increment", "next_increment"),
            )
            await write_deck(db, parse_deck(text.splitlines(), sipp.name))
        for profile in profiles:
            await store.set_profile(profile)
        for did in dids:
            await store.add_did(did)
    finally:
        await db.close()


def acr_env(
    node_address: str,
    url: str,
    redis_url: str | None = None,
    extra: Mapping[str, str] | None = None,
    node: str = "primary",
    data_dir: Path | None = None,
) -> dict[str, str]:
    """The environment of ``sipline acr --node NODE`` listening on ``node_address``.

    ``data_dir`` holds the node's journal (its answered calls and unwritten CDRs):
    give each test its own, and the same one again to a node restarted in a test."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    if data_dir is not None:
        clean["SIPLINE_NODE__DATA_DIR"] = str(data_dir)
    return {
        **clean,
        f"SIPLINE_ACR__{node.upper()}": node_address,
        "SIPLINE_NODE__NAME": node,
        "SIPLINE_DATABASE__URL": url,
        "SIPLINE_REDIS__URL": redis_url or "",
        "SIPLINE_LOG__LEVEL": "warning",  # info logs a line per message
        "SIPLINE_NODE__DRAIN_TIMEOUT": "1",
        **(extra or {}),
    }


def acr_command(node: str = "primary", config: str = "configs/single.toml") -> list[str]:
    return [str(SIPLINE), "acr", "--node", node, "--config", config]


def sipp_binary() -> str:
    return shutil.which("sipp") or "/usr/bin/sipp"

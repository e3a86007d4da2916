"""What a node reports about itself (``GET /status``, its heartbeat), and the
table ``sipline status`` prints from the reports of every node. No I/O.

A figure a role does not have is None and shows as "-" (a proxy holds no
calls; only proxies count registrations). A node that did not answer is
shown by ``silent``: its name, role and addresses, a state, why, and no
figures at all: old numbers shown as if current would be made up.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from sipline.cluster.state import State

FIGURES = ("calls", "cps", "registrations", "gateways_up", "gateways_down", "sessions")


@dataclass(slots=True, kw_only=True)
class Report:
    name: str
    role: str
    address: str  # where it serves (SIP, or the relay's ng control)
    admin: str = ""  # HOST:PORT of its admin endpoint ("" when unknown)
    version: str = ""
    started_at: float = 0.0  # wall clock
    state: str = State.RUNNING.value
    detail: str = ""  # why the state is what it is
    calls: int | None = None
    cps: float | None = None
    registrations: int | None = None
    gateways_up: int | None = None
    gateways_down: int | None = None
    sessions: int | None = None
    config_version: int | None = None
    last_error: str = ""
    at: float = 0.0  # when this report was made (wall clock)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Report:
        """A report read from a node or Redis; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("a node report is a JSON object")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in FIGURES or f.name == "config_version":
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    raise ValueError(f"{f.name}: not a number")
            elif f.name in ("started_at", "at"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{f.name}: not a number")
            elif not isinstance(value, str):
                raise ValueError(f"{f.name}: not a string")
            values[f.name] = value
        for required in ("name", "role", "address"):
            if required not in values:
                raise ValueError(f"a node report needs {required}")
        return cls(**values)

    @classmethod
    def silent(
        cls, name: str, role: str, address: str, admin: str, state: State, detail: str
    ) -> Report:
        """A node we have no live word from: no figures, no version, no uptime."""
        return cls(
            name=name, role=role, address=address, admin=admin, state=state.value, detail=detail
        )


HEADER = (
    "ROLE", "NAME", "ADDRESS", "VERSION", "UPTIME", "STATE", "CALLS", "CPS", "REGS",
    "GATEWAYS", "SESSIONS", "CONFIG", "LAST ERROR",
)  # fmt: skip


def rows(reports: list[Report], now: float | None = None) -> list[tuple[str, ...]]:
    """The table's rows, header first, nodes by role then name."""
    now = time.time() if now is None else now
    table = [HEADER]
    for r in sorted(reports, key=lambda r: (r.role, r.name)):
        state = f"{r.state} ({r.detail})" if r.detail else r.state
        table.append(
            (
                r.role, r.name, r.address, r.version or "-",
                uptime(now - r.started_at) if r.started_at else "-",
                state, _figure(r.calls), "-" if r.cps is None else f"{r.cps:.1f}",
                _figure(r.registrations), _gateways(r), _figure(r.sessions),
                _figure(r.config_version), r.last_error or "-",
            )
        )  # fmt: skip
    return table


def uptime(seconds: float) -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _figure(value: int | None) -> str:
    return "-" if value is None else str(value)


def _gateways(r: Report) -> str:
    if r.gateways_up is None and r.gateways_down is None:
        return "-"
    return f"{r.gateways_up or 0} up/{r.gateways_down or 0} down"

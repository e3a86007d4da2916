"""Stand-ins for piece A's SubscriberDirectory and Authenticator (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response


@dataclass
class FakeSubscriber:
    aor: str


@dataclass
class FakeDirectory:
    """Who exists: ``known`` AORs."""

    subscribers: set[str] = field(default_factory=set)

    def known(self, aor: str) -> bool:
        return aor in self.subscribers


@dataclass
class FakeAuthenticator:
    """407 without Proxy-Authorization; with it, the From user is who calls."""

    asked: list[str] = field(default_factory=list)

    def authenticate(
        self, request: Request, now: float, *, proxy: bool
    ) -> FakeSubscriber | Response:
        assert proxy
        self.asked.append(request.method)
        if "proxy-authorization" not in request.headers:
            response = request.response(407, "Proxy Authentication Required", to_tag=new_tag())
            response.headers.add("Proxy-Authenticate", 'Digest realm="example.com", nonce="n"')
            return response
        uri = request.from_.uri
        return FakeSubscriber(f"{uri.user}@example.com")  # type: ignore[union-attr]


CREDENTIALS = ("Proxy-Authorization", 'Digest realm="example.com", username="alice", response="x"')

"""The edge proxy's own routing values: registered contacts as targets,
telephone numbers, our credentials (RFC 3261 §16.5, RFC 3327, §22.3)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.routing import Target, binding_target, drop_own_credentials, telephone_number
from sipline.sip.address import Address
from sipline.sip.uri import parse_uri
from tests.proxying.test_rules import invite


@dataclass
class FakeBinding:
    contact: str
    source: Address | None = None
    path: tuple[str, ...] = ()
    q: float = 1.0
    nat: bool = False


def test_a_binding_is_reached_where_it_registered_from() -> None:
    source = Address("TCP", "203.0.113.5", 41000, 7)
    target = binding_target(FakeBinding("sip:bob@192.168.1.9:5060;transport=tcp", source))
    assert target == Target(source, "sip:bob@192.168.1.9:5060;transport=tcp", (), True)


def test_a_binding_behind_nat_makes_a_target_behind_nat() -> None:
    source = Address("UDP", "203.0.113.5", 41000)
    target = binding_target(FakeBinding("sip:bob@192.168.1.9:5060", source, nat=True))
    assert target is not None and target.nat and target.flow


def test_a_binding_with_a_path_is_reached_through_it() -> None:
    binding = FakeBinding(
        "sip:bob@192.168.1.9", Address("UDP", "198.51.100.1", 5060), ("<sip:198.51.100.2;lr>",)
    )
    target = binding_target(binding)
    assert target == Target(
        Address("UDP", "198.51.100.2", 5060), binding.contact, binding.path, False
    )


def test_a_binding_without_source_is_reached_at_its_contact() -> None:
    assert binding_target(FakeBinding("sip:bob@192.0.2.9:5064")) == Target(
        Address("UDP", "192.0.2.9", 5064), "sip:bob@192.0.2.9:5064"
    )
    assert binding_target(FakeBinding("sip:bob@phone.example.net")) is None


def test_telephone_numbers_are_told_from_user_names() -> None:
    uri = parse_uri("sip:x@example.com")
    assert telephone_number("+1 (555)".replace(" ", ""), uri)  # type: ignore[arg-type]
    assert telephone_number("15551234", uri)  # type: ignore[arg-type]
    assert not telephone_number("bob", uri)  # type: ignore[arg-type]
    assert not telephone_number("+", uri)  # type: ignore[arg-type]
    assert telephone_number("bob", parse_uri("sip:bob@example.com;user=phone"))  # type: ignore[arg-type]


def test_our_credentials_are_consumed_and_others_passed_on() -> None:
    request = invite(
        extra='Proxy-Authorization: Digest realm="example.com", username="alice"\r\n'
        'Proxy-Authorization: Digest realm="other.net", username="alice"\r\n'
    )
    drop_own_credentials(request, ["example.com"])
    assert request.headers.get_all("proxy-authorization") == [
        'Digest realm="other.net", username="alice"'
    ]

"""The request rules of RFC 3261 §16.3 - §16.6, one function at a time, no sockets."""

from __future__ import annotations

from sipline.proxying.rules import (
    Local,
    decrement_max_forwards,
    loop_key,
    looped,
    next_hop,
    preprocess_routes,
    resolve,
    route_params,
    stateless_branch,
    strict_route,
    validate,
    via_address,
)
from sipline.proxying.signing import Signer
from sipline.sip.address import Address
from sipline.sip.headers import Via
from sipline.sip.ids import new_branch
from sipline.sip.message import Request, parse_message
from sipline.sip.uri import parse_uri

US = "10.0.0.1"
LOCAL = Local(
    {"UDP": Address("UDP", US, 5060), "TCP": Address("TCP", US, 5060)}, ["Example.com", "b.org"]
)
CALLER = Address("UDP", "192.0.2.7", 40000)
SIGNER = Signer.from_secret("test secret")


def invite(
    uri: str = "sip:bob@example.com",
    *,
    routes: tuple[str, ...] = (),
    vias: tuple[str, ...] = ("SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKcaller;rport=40000",),
    max_forwards: int = 70,
    to_tag: str | None = None,
    method: str = "INVITE",
    extra: str = "",
) -> Request:
    lines = [f"{method} {uri} SIP/2.0"]
    lines += [f"Via: {via}" for via in vias]
    lines += [f"Route: {route}" for route in routes]
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines += [
        f"Max-Forwards: {max_forwards}",
        "From: <sip:alice@example.com>;tag=a1",
        f"To: {to}",
        "Call-ID: c1@192.0.2.7",
        f"CSeq: 1 {method}",
        "Contact: <sip:alice@192.168.1.7:5060>",
    ]
    text = "\r\n".join(lines) + "\r\n" + extra + "Content-Length: 0\r\n\r\n"
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


# -- §16.3 validation ---------------------------------------------------------------
def test_a_request_with_max_forwards_0_is_refused_483() -> None:
    rejection = validate(invite(max_forwards=0))
    assert rejection is not None and rejection.status == 483
    assert "Max-Forwards" in rejection.reason


def test_a_request_with_hops_left_passes_validation() -> None:
    assert validate(invite(max_forwards=1)) is None


def test_a_request_uri_scheme_we_cannot_route_is_refused_416() -> None:
    rejection = validate(invite("mailto:bob@example.com"))
    assert rejection is not None and rejection.status == 416 and "mailto" in rejection.reason


def test_tel_and_sips_uris_are_routable() -> None:
    assert validate(invite("tel:+15551234")) is None
    assert validate(invite("sips:bob@example.com")) is None


def test_proxy_require_is_refused_420_naming_the_unsupported_option() -> None:
    rejection = validate(invite(extra="Proxy-Require: foo\r\n"))
    assert rejection is not None and rejection.status == 420
    assert rejection.headers == (("Unsupported", "foo"),)


def test_forwarding_decrements_max_forwards() -> None:
    request = invite(max_forwards=70)
    decrement_max_forwards(request)
    assert request.max_forwards == 69


def test_a_request_without_max_forwards_is_routed_and_gets_one() -> None:
    # RFC 3261 §16.6 step 3: the proxy adds Max-Forwards (70) less one.
    request = parse_message(invite().serialise().replace(b"Max-Forwards: 70\r\n", b""))
    assert isinstance(request, Request) and request.max_forwards is None
    assert validate(request) is None
    decrement_max_forwards(request)
    assert request.headers.get("Max-Forwards") == "69"


# -- §16.4 Route processing -----------------------------------------------------------
def test_a_top_route_with_our_record_route_is_popped_and_its_parameters_returned() -> None:
    request = invite(
        "sip:bob@192.168.1.9",
        routes=(f"<sip:{US}:5060;lr;ftag=a1;fb=192.0.2.9~5060~u>", "<sip:198.51.100.1;lr>"),
        to_tag="b1",
    )
    params = preprocess_routes(request, LOCAL)
    assert params == [{"lr": "", "ftag": "a1", "fb": "192.0.2.9~5060~u"}]
    assert request.headers.values("route") == ["<sip:198.51.100.1;lr>"]


def test_every_route_naming_us_is_popped_double_record_route_included() -> None:
    request = invite(
        routes=(f"<sip:{US}:5060;transport=tcp;lr;ftag=a1>", f"<sip:{US}:5060;lr;ftag=a1>")
    )
    assert preprocess_routes(request, LOCAL) == [
        {"transport": "tcp", "lr": "", "ftag": "a1"},
        {"lr": "", "ftag": "a1"},
    ]
    assert "route" not in request.headers


def test_a_preloaded_route_naming_our_address_or_domain_is_ours() -> None:
    for route in (f"<sip:{US};lr>", "<sip:example.com;lr>", f"<sip:{US}:5060;lr>"):
        request = invite(routes=(route,))
        assert preprocess_routes(request, LOCAL) == [{"lr": ""}]
        assert "route" not in request.headers


def test_a_route_naming_another_host_or_port_is_left_alone() -> None:
    for route in ("<sip:198.51.100.1;lr>", f"<sip:{US}:5070;lr>"):
        request = invite(routes=(route,))
        assert preprocess_routes(request, LOCAL) == []
        assert request.headers.values("route") == [route]


def test_a_strict_router_upstream_is_undone_request_uri_from_the_last_route() -> None:
    # §16.4: our Record-Route URI came in the Request-URI, the target last in Route.
    request = invite(
        f"sip:{US}:5060;lr;ftag=a1",
        routes=("<sip:198.51.100.1;lr>", "<sip:bob@192.168.1.9:5062>"),
        to_tag="b1",
    )
    assert preprocess_routes(request, LOCAL) == [{"lr": "", "ftag": "a1"}]
    assert request.uri == "sip:bob@192.168.1.9:5062"
    assert request.headers.values("route") == ["<sip:198.51.100.1;lr>"]


def test_a_strict_router_downstream_gets_itself_as_request_uri() -> None:
    # §16.6 step 6.
    request = invite("sip:bob@192.168.1.9", routes=("<sip:198.51.100.1>", "<sip:198.51.100.2;lr>"))
    strict_route(request)
    assert request.uri == "sip:198.51.100.1"
    assert request.headers.values("route") == [
        "<sip:198.51.100.2;lr>",
        "<sip:bob@192.168.1.9>",
    ]


def test_a_loose_router_downstream_leaves_the_request_uri() -> None:
    request = invite("sip:bob@192.168.1.9", routes=("<sip:198.51.100.1;lr>",))
    strict_route(request)
    assert request.uri == "sip:bob@192.168.1.9"
    assert next_hop(request) == Address("UDP", "198.51.100.1", 5060)


def test_next_hop_without_routes_is_the_request_uri() -> None:
    assert next_hop(invite("sip:bob@192.0.2.9:5070;transport=tcp")) == Address(
        "TCP", "192.0.2.9", 5070
    )


def test_route_params_reads_what_we_wrote() -> None:
    assert route_params(f"sip:{US}:5060;lr;ftag=x;fa=1.2.3.4~5~u") == {
        "lr": "",
        "ftag": "x",
        "fa": "1.2.3.4~5~u",
    }


# -- §16.3 step 4 loops -------------------------------------------------------------
def _forwarded_back(request: Request, key: str) -> Request:
    """The copy we forwarded, come back to us through another proxy."""
    ours = LOCAL.via("UDP", SIGNER.branch(new_branch(), key, CALLER))
    return invite(
        request.uri,
        vias=("SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKother", ours, request.headers.get("via")),
    )


def test_the_same_request_coming_back_through_us_has_looped() -> None:
    request = invite()
    key = loop_key(request)
    back = _forwarded_back(request, key)
    assert looped(back, LOCAL, loop_key(back))


def test_a_request_coming_back_for_another_target_spirals() -> None:
    request = invite()
    back = _forwarded_back(request, loop_key(request))
    back.uri = "sip:carol@example.com"
    assert not looped(back, LOCAL, loop_key(back))


def test_a_request_that_never_passed_us_has_not_looped() -> None:
    request = invite()
    assert not looped(request, LOCAL, loop_key(request))


def test_a_stateless_branch_is_the_same_for_the_same_request() -> None:
    assert stateless_branch(invite()) == stateless_branch(invite())
    assert stateless_branch(invite()).startswith("z9hG4bK")


# -- Record-Route and flows ------------------------------------------------------------
def test_record_route_names_us_per_transport_with_lr() -> None:
    assert LOCAL.record_route("UDP", ";ftag=a1") == f"<sip:{US}:5060;lr;ftag=a1>"
    assert LOCAL.record_route("TCP", "") == f"<sip:{US}:5060;transport=tcp;lr>"


def test_our_record_route_is_recognised_when_it_comes_back() -> None:
    value = LOCAL.record_route("TCP", ";ftag=a1")[1:-1]
    assert LOCAL.names_us(value) and LOCAL.is_own_record_route(value)
    assert not LOCAL.is_own_record_route(f"sip:bob@{US}:5060")


# -- resolving --------------------------------------------------------------
def test_resolve_takes_ip_literals_transport_maddr_and_default_port() -> None:
    assert resolve("sip:bob@192.0.2.9") == Address("UDP", "192.0.2.9", 5060)
    assert resolve("sip:bob@192.0.2.9:5070;transport=TCP") == Address("TCP", "192.0.2.9", 5070)
    assert resolve("sip:bob@example.net;maddr=192.0.2.10") == Address("UDP", "192.0.2.10", 5060)
    assert resolve("sip:[2001:db8::1]:5062") == Address("UDP", "2001:db8::1", 5062)


def test_resolve_reaches_sips_and_transport_tls_over_tls() -> None:
    # RFC 5630 §3.1.2: a sips URI is TLS whatever transport it names, on 5061 by default.
    assert resolve("sips:bob@192.0.2.9") == Address("TLS", "192.0.2.9", 5061)
    assert resolve("sips:bob@192.0.2.9:5071;transport=tcp") == Address("TLS", "192.0.2.9", 5071)
    assert resolve("sip:bob@192.0.2.9;transport=tls") == Address("TLS", "192.0.2.9", 5061)


def test_resolve_declines_what_needs_dns_or_another_transport() -> None:
    assert resolve("sip:bob@example.net") is None
    assert resolve("sips:bob@example.net") is None
    assert resolve("sip:bob@192.0.2.9;transport=sctp") is None
    assert resolve("tel:+15551234") is None


def test_a_stateless_response_goes_where_its_via_says() -> None:
    via = Via.parse("SIP/2.0/UDP 192.168.1.7:5060;branch=z9hG4bK1;received=203.0.113.5;rport=4000")
    assert via_address(via) == Address("UDP", "203.0.113.5", 4000)
    assert via_address(Via.parse("SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK1")) == Address(
        "TCP", "192.0.2.7", 5060
    )


def test_a_stateless_response_never_goes_to_the_maddr_of_its_via() -> None:
    via = Via.parse("SIP/2.0/UDP 192.0.2.7:5062;maddr=198.51.100.66;branch=z9hG4bK1;received=203.0.113.5")
    assert via_address(via) == Address("UDP", "203.0.113.5", 5062)


def test_our_domains_and_our_address_name_a_domain_of_ours() -> None:
    assert LOCAL.domain_of(parse_uri("sip:bob@EXAMPLE.com")) == "example.com"  # type: ignore[arg-type]
    assert LOCAL.domain_of(parse_uri("sip:bob@b.org")) == "b.org"  # type: ignore[arg-type]
    assert LOCAL.domain_of(parse_uri(f"sip:bob@{US}:5060")) == "example.com"  # type: ignore[arg-type]
    assert LOCAL.domain_of(parse_uri(f"sip:bob@{US}:5070")) is None  # type: ignore[arg-type]
    assert LOCAL.domain_of(parse_uri("sip:bob@example.net")) is None  # type: ignore[arg-type]


def test_sip_host_port_is_the_host_and_port_of_sip_uris_only():
    from sipline.proxying.rules import sip_host_port

    assert sip_host_port("sip:bob@Example.COM:5070;transport=tcp") == ("Example.COM", 5070)
    assert sip_host_port("sips:[2001:db8::1]") == ("[2001:db8::1]", None)
    assert sip_host_port("tel:+15551234567") is None
    assert sip_host_port("sip:bob@exa%mple.com") is None
    long = "sip:" + "a" * 300 + "@example.com"
    assert sip_host_port(long) == ("example.com", None)  # past the cache's length, parsed each time

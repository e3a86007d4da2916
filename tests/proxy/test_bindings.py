"""The registrar's rules (RFC 3261 §10.3, RFC 3327, RFC 5626), one per test, without I/O."""

from __future__ import annotations

import pytest

from proxy.bindings import (
    Origin,
    Policy,
    Update,
    aor_of,
    behind_nat,
    check_require,
    ok,
    plan,
)
from proxy.location import Binding
from proxy.subscribers import ServedDomains
from sipline.proxying.rules import Rejection
from sipline.sip.address import Address
from sipline.sip.message import Request, Response
from sipline.sip.uri import parse_uri
from tests.proxy.phone import request

NOW = 1_700_000_000.0
AOR = "alice@example.com"
POLICY = Policy(min_expires=60, max_expires=3600, default_expires=1800, max_contacts=3)
SOURCE = Address("UDP", "192.0.2.10", 5060)
ORIGIN = Origin(SOURCE, "node-a")
PHONE = "sip:alice@192.0.2.10:5060"


def register(*contacts: str, call_id: str = "reg-1", cseq: int = 2, **headers: str) -> Request:
    extra = [("Contact", c) for c in contacts]
    extra += [(name.replace("_", "-"), value) for name, value in headers.items()]
    return request("REGISTER", "sip:example.com", from_=AOR, to=AOR, call_id=call_id,
                   cseq=cseq, headers=tuple(extra))  # fmt: skip


def planned(req: Request, live: list[Binding] = (), now: float = NOW, policy: Policy = POLICY,
            origin: Origin = ORIGIN) -> Update:  # type: ignore[assignment]  # fmt: skip
    update = plan(req, AOR, list(live), now, policy, origin)
    assert isinstance(update, Update), update
    return update


def refused(req: Request, live: list[Binding] = (), policy: Policy = POLICY) -> Rejection:  # type: ignore[assignment]
    update = plan(req, AOR, list(live), NOW, policy, ORIGIN)
    assert isinstance(update, Rejection), update
    return update


def bound(contact: str = PHONE, **fields: object) -> Binding:
    values: dict[str, object] = {"aor": AOR, "contact": contact, "expires_at": NOW + 600,
                                 "call_id": "reg-1", "cseq": 1, "source": SOURCE,
                                 "node": "node-a", "updated_at": NOW - 100}  # fmt: skip
    values.update(fields)
    return Binding(**values)  # type: ignore[arg-type]


def expires_of(update: Update) -> list[float]:
    return [b.expires_at - NOW for b in update.upserts]


# -- the address of record and extensions ------------------------------------------------

DOMAINS = ServedDomains(["example.com"], ["192.0.2.1"])


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("alice@EXAMPLE.com", "alice@example.com"),
        ("alice@192.0.2.1", "alice@example.com"),  # our own address stands for the first domain
    ],
)
def test_the_aor_is_the_to_user_at_our_domain(to: str, expected: str) -> None:
    req = request("REGISTER", "sip:example.com", from_=to, to=to)
    assert aor_of(req, DOMAINS.canonical) == expected


def test_an_aor_in_a_domain_we_do_not_serve_is_not_found() -> None:
    req = request("REGISTER", "sip:evil.org", from_="eve@evil.org", to="eve@evil.org")
    assert aor_of(req, DOMAINS.canonical) == Rejection(404, "Not Found (AOR domain not served here)")
    req = request("REGISTER", "sip:example.com", from_="example.com", to="example.com")
    assert aor_of(req, DOMAINS.canonical) == Rejection(404, "Not Found (the To URI has no user part)")


def test_an_unsupported_required_extension_is_refused_with_420() -> None:
    assert check_require(register(PHONE, Require="path")) is None
    refusal = check_require(register(PHONE, Require="path, gruu"))
    assert refusal == Rejection(420, "Bad Extension (gruu)", (("Unsupported", "gruu"),))


# -- expires -------------------------------------------------------------------------------


def test_expires_comes_from_the_contact_parameter_first() -> None:
    assert expires_of(planned(register(f"<{PHONE}>;expires=120", Expires="300"))) == [120]


def test_then_from_the_expires_header() -> None:
    assert expires_of(planned(register(PHONE, Expires="300"))) == [300]


def test_then_from_the_default() -> None:
    assert expires_of(planned(register(PHONE))) == [1800]


def test_expires_is_capped_at_the_maximum() -> None:
    assert expires_of(planned(register(PHONE, Expires="86400"))) == [3600]


def test_too_brief_an_interval_gets_423_with_min_expires() -> None:
    refusal = refused(register(f"<{PHONE}>;expires=30", "<sip:alice@192.0.2.11>;expires=600"))
    assert refusal.status == 423
    assert refusal.reason == "Interval Too Brief (30 s, at least 60 s)"
    assert refusal.headers == (("Min-Expires", "60"),)
    response = refusal.response(register(PHONE))
    assert response.headers.get("Min-Expires") == "60" and response.to.tag


def test_expires_zero_removes_the_binding() -> None:
    current = bound()
    update = planned(register(PHONE, Expires="0"), [current])
    assert update.upserts == [] and update.removals == [current]


def test_expires_zero_for_an_unknown_contact_changes_nothing() -> None:
    assert planned(register(PHONE, Expires="0")).empty


# -- adding and refreshing ----------------------------------------------------------------


def test_a_new_binding_records_where_the_register_came_from() -> None:
    req = register(f"<{PHONE}>;q=0.5", User_Agent="Yealink T46U")
    (binding,) = planned(req).upserts
    assert binding == Binding(aor=AOR, contact=PHONE, expires_at=NOW + 1800, q=0.5,
                              call_id="reg-1", cseq=2, source=SOURCE, user_agent="Yealink T46U",
                              node="node-a", updated_at=NOW, nat=False)  # fmt: skip


def test_a_refresh_updates_the_binding_in_place() -> None:
    update = planned(register(PHONE, cseq=5), [bound(cseq=4)])
    assert [b.cseq for b in update.upserts] == [5] and update.removals == []


def test_a_contact_equal_as_a_uri_replaces_the_binding_written_differently() -> None:
    # RFC 3261 §19.1.4: host names compare without case; unknown parameters in one only are ignored.
    current = bound("sip:alice@Phone.example.net;ob")
    update = planned(register("<sip:alice@phone.example.net>"), [current])
    assert [b.contact for b in update.upserts] == ["sip:alice@phone.example.net"]
    assert update.removals == [current]


def test_the_same_call_id_with_a_lower_or_equal_cseq_is_out_of_order() -> None:
    for cseq in (3, 4):
        refusal = refused(register(PHONE, cseq=cseq), [bound(cseq=4)])
        assert refusal == Rejection(
            500, f"Server Internal Error (out of order: CSeq {cseq}, binding has 4)"
        )


def test_another_call_id_may_have_any_cseq() -> None:
    update = planned(register(PHONE, call_id="reg-after-reboot", cseq=1), [bound(cseq=4)])
    assert [(b.call_id, b.cseq) for b in update.upserts] == [("reg-after-reboot", 1)]


def test_more_than_max_contacts_is_forbidden_with_the_reason() -> None:
    live = [bound(f"sip:alice@192.0.2.{n}") for n in (1, 2, 3)]
    refusal = refused(register("<sip:alice@192.0.2.4>"), live)
    assert refusal == Rejection(403, "Forbidden (too many contacts: 4, at most 3)")
    assert planned(register("<sip:alice@192.0.2.1>"), live).upserts  # a refresh is no extra


def test_a_query_without_contact_changes_nothing() -> None:
    assert planned(register(), [bound()]).empty


# -- Contact: * ----------------------------------------------------------------------------


def test_star_with_expires_zero_removes_every_binding() -> None:
    live = [bound("sip:alice@192.0.2.1"), bound("sip:alice@192.0.2.2", call_id="other", cseq=9)]
    update = planned(register("*", Expires="0", cseq=2), live)
    assert update.upserts == [] and update.removals == live


def test_star_with_other_contacts_is_a_bad_request() -> None:
    assert refused(register("*", PHONE, Expires="0")) == Rejection(
        400, "Bad Request (Contact: * with other contacts)"
    )


@pytest.mark.parametrize("expires", [None, "60"])
def test_star_needs_expires_zero(expires: str | None) -> None:
    req = register("*") if expires is None else register("*", Expires=expires)
    assert refused(req) == Rejection(400, "Bad Request (Contact: * without Expires: 0)")


def test_star_is_out_of_order_against_a_binding_of_the_same_call_id() -> None:
    assert refused(register("*", Expires="0", cseq=4), [bound(cseq=4)]).status == 500


# -- Path (RFC 3327) and outbound (RFC 5626) ---------------------------------------------------


def test_path_is_stored_in_order_and_echoed_in_the_200() -> None:
    req = register(PHONE, Path="<sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>")
    (binding,) = planned(req).upserts
    assert binding.path == ("<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>")
    response = ok(req, [binding], NOW)
    assert response.headers.get_all("Path") == [req.headers.get("Path")]
    assert response.headers.get("Supported") == "path"


INSTANCE = '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


def test_the_same_instance_and_reg_id_replace_the_devices_old_binding() -> None:
    old = bound("sip:alice@192.0.2.10:5060", instance=INSTANCE.strip('"'), reg_id=1)
    req = register(f"<sip:alice@198.51.100.3:7000>;+sip.instance={INSTANCE};reg-id=1", call_id="x")
    update = planned(req, [old])
    assert [b.contact for b in update.upserts] == ["sip:alice@198.51.100.3:7000"]
    assert update.removals == [old]


def test_another_reg_id_of_the_same_instance_is_another_flow() -> None:
    old = bound("sip:alice@192.0.2.10:5060", instance=INSTANCE.strip('"'), reg_id=1)
    req = register(f"<sip:alice@198.51.100.3:7000>;+sip.instance={INSTANCE};reg-id=2", call_id="x")
    update = planned(req, [old])
    assert len(update.upserts) == 1 and update.removals == []


# -- NAT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("via", "contact", "source", "nat"),
    [
        ("192.0.2.10:5060", "sip:a@192.0.2.10:5060", SOURCE, False),
        ("192.0.2.10", "sip:a@192.0.2.10", SOURCE, False),  # 5060 by default
        ("10.0.0.5:5060", "sip:a@10.0.0.5:5060", SOURCE, True),  # private address, both
        ("192.0.2.10:5060", "sip:a@10.0.0.5:5060", SOURCE, True),  # Contact only
        ("10.0.0.5:5060", "sip:a@192.0.2.10:5060", SOURCE, True),  # Via only
        ("192.0.2.10:5060", "sip:a@192.0.2.10:5060", Address("UDP", "192.0.2.10", 40000), True),
        # Over TCP the source port is the connection's own: only the host counts.
        ("192.0.2.10:5060", "sip:a@192.0.2.10:5060", Address("TCP", "192.0.2.10", 40000, 7), False),
    ],
)
def test_behind_nat_when_via_or_contact_name_another_address(
    via: str, contact: str, source: Address, nat: bool
) -> None:
    req = request("REGISTER", "sip:example.com", from_=AOR, to=AOR,
                  via=f"SIP/2.0/{source.transport} {via};branch=z9hG4bK-1")  # fmt: skip
    assert behind_nat(req, parse_uri(contact), source) is nat


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (register("<sip:alice@192.0.2.10"), "Bad Request (unclosed <URI>)"),
        (register(PHONE, Expires="soon"), "Bad Request (bad Expires)"),
        (register("<sip:alice@192.0.2.10>;expires=x"), "Bad Request (bad Contact expires)"),
        (
            register("<sip:alicé@192.0.2.10>"),
            "Bad Request (Contact URI not ASCII or longer than 2000 characters)",
        ),
        (register(PHONE, call_id="c" * 256), "Bad Request (Call-ID longer than 255 characters)"),
    ],
)
def test_malformed_registers_are_bad_requests_with_the_reason(req: Request, reason: str) -> None:
    refusal = refused(req)
    assert (refusal.status, refusal.reason) == (400, reason)


def test_a_long_user_agent_is_cut_to_the_column() -> None:
    (binding,) = planned(register(PHONE, User_Agent="x" * 300)).upserts
    assert binding.user_agent == "x" * 255


# -- the 200 ----------------------------------------------------------------------------------------


def test_the_200_lists_every_binding_with_its_expires_and_a_date() -> None:
    bindings = [
        bound("sip:alice@192.0.2.1", expires_at=NOW + 600),
        bound(
            "sip:alice@192.0.2.2",
            expires_at=NOW + 59.6,
            q=0.5,
            instance=INSTANCE.strip('"'),
            reg_id=1,
        ),  # fmt: skip
    ]
    response: Response = ok(register(PHONE), bindings, NOW)
    assert (response.status, response.reason) == (200, "OK")
    assert response.headers.get_all("Contact") == [
        "<sip:alice@192.0.2.1>;expires=600",
        f"<sip:alice@192.0.2.2>;expires=60;q=0.5;+sip.instance={INSTANCE};reg-id=1",
    ]
    assert response.headers.get("Date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert response.to.tag

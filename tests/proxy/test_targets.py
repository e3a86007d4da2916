"""Target selection (RFC 3261 §16.5) over the real Location and directory, no sockets."""

from __future__ import annotations

from proxy.location import Binding, Location
from proxy.routing import Plan, Target
from proxy.subscribers import SubscriberDirectory
from proxy.targets import FAILOVER_STATUSES, Targets
from sipline.proxying.rules import Local, Rejection
from sipline.sip.address import Address, as_flow
from tests.proxy.phone import subscriber
from tests.proxying.test_rules import invite

NOW = 1_700_000_000.0
US = "10.0.0.1"
LOCAL = Local({"UDP": Address("UDP", US, 5060)}, ["example.com"])
B2BUAS = [Address("UDP", "10.0.0.2", 5070), Address("UDP", "10.0.0.3", 5070)]
DESK = Address("UDP", "203.0.113.5", 5060)
MOBILE = Address("TCP", "203.0.113.6", 40000, 3)


def targets(*bindings: Binding) -> Targets:
    location = Location()
    location.apply(bindings)
    directory = SubscriberDirectory(
        subscribers=[subscriber("bob@example.com"), subscriber("carol@example.com", id_=2)]
    )
    return Targets(location, directory, list(B2BUAS), lambda: NOW)


def binding(contact: str, source: Address, q: float = 1.0) -> Binding:
    return Binding("bob@example.com", contact, NOW + 60, q=q, source=source)


def test_a_subscriber_is_forked_to_every_contact_in_q_groups() -> None:
    plan = targets(
        binding("sip:bob@192.168.1.5", DESK, q=0.5),
        binding("sip:bob@192.168.1.6;transport=tcp", MOBILE, q=1.0),
    ).plan(invite(), LOCAL, None, trusted=False)
    assert plan == Plan(
        [
            [Target(MOBILE, "sip:bob@192.168.1.6;transport=tcp", (), True)],
            [Target(as_flow(DESK), "sip:bob@192.168.1.5", (), True)],
        ]
    )


def test_our_own_address_in_the_request_uri_means_the_first_domain() -> None:
    plan = targets(binding("sip:bob@192.168.1.5", DESK)).plan(
        invite(f"sip:bob@{US}:5060"), LOCAL, None, trusted=False
    )
    assert isinstance(plan, Plan) and plan.groups[0][0].dest == as_flow(DESK)


def test_a_known_subscriber_without_bindings_is_temporarily_unavailable() -> None:
    plan = targets().plan(invite(), LOCAL, None, trusted=False)
    assert plan == Rejection(480, "Temporarily Unavailable: bob@example.com is not registered")


def test_an_expired_binding_counts_as_none() -> None:
    expired = Binding("bob@example.com", "sip:bob@192.168.1.5", NOW - 1, source=DESK)
    plan = targets(expired).plan(invite(), LOCAL, None, trusted=False)
    assert isinstance(plan, Rejection) and plan.status == 480


def test_an_unknown_user_is_not_found() -> None:
    plan = targets().plan(invite("sip:zoe@example.com"), LOCAL, None, trusted=False)
    assert plan == Rejection(404, "Not Found: no subscriber zoe@example.com")


def test_numbers_and_other_domains_go_to_the_b2buas_in_failover_order() -> None:
    for uri in ("sip:+15551234567@example.com", "tel:+15551234567", "sip:dave@example.net"):
        plan = targets().plan(invite(uri), LOCAL, None, trusted=False)
        assert plan == Plan([[Target(B2BUAS[0])], [Target(B2BUAS[1])]], FAILOVER_STATUSES, True)


def test_trusted_peers_and_dialogs_never_go_off_net() -> None:
    number = "sip:+15551234567@example.com"
    assert targets().plan(invite(number), LOCAL, None, trusted=True) == Rejection(
        404, "Not Found: no subscriber +15551234567@example.com"
    )
    plan = targets().plan(invite(number, to_tag="x"), LOCAL, None, trusted=False)
    assert isinstance(plan, Rejection) and plan.status == 404


def test_a_trusted_peer_may_name_an_address_directly() -> None:
    plan = targets().plan(invite("sip:dave@192.0.2.44:5080"), LOCAL, None, trusted=True)
    assert plan == Plan([[Target(Address("UDP", "192.0.2.44", 5080))]])
    refused = targets().plan(invite("sip:dave@example.net"), LOCAL, None, trusted=True)
    assert refused == Rejection(404, "Not Found: sip:dave@example.net is not served here")


def test_in_a_dialog_the_recorded_flow_wins_over_the_request_uri() -> None:
    request = invite("sip:bob@192.168.1.5", to_tag="b1", method="BYE")
    plan = targets().plan(request, LOCAL, {"ftag": "a1", "fb": "203.0.113.5~5060~u"}, trusted=False)
    assert plan == Plan([[Target(as_flow(DESK))]])  # a UA's flow: from the shared socket


def test_in_a_dialog_without_a_flow_the_request_uri_decides() -> None:
    request = invite("sip:bob@192.0.2.9:5062", to_tag="b1", method="BYE")
    assert targets().plan(request, LOCAL, {"lr": ""}, trusted=False) == Plan(
        [[Target(Address("UDP", "192.0.2.9", 5062))]]
    )
    unresolvable = invite("sip:bob@phone.example.net", to_tag="b1", method="BYE")
    plan = targets().plan(unresolvable, LOCAL, {}, trusted=False)
    assert isinstance(plan, Rejection) and plan.status == 502


def test_a_route_beyond_us_is_followed() -> None:
    request = invite(routes=("<sip:198.51.100.1:5070;lr>",))
    plan = targets().plan(request, LOCAL, None, trusted=False)
    assert plan == Plan([[Target(Address("UDP", "198.51.100.1", 5070))]])


def test_no_b2bua_configured_means_no_off_net_calls() -> None:
    empty = Targets(Location(), SubscriberDirectory(), [], lambda: NOW)
    plan = empty.plan(invite("tel:+15551234567"), LOCAL, None, trusted=False)
    assert isinstance(plan, Rejection) and plan.status == 404 and "proxy.b2bua" in plan.reason

"""Identity follows authentication (RFC 3325): who the proxy says a request is from.

Every request the proxy sends on for an authenticated subscriber carries
P-Asserted-Identity naming that subscriber, in place of any it had (a
stranger's was taken off at the edge, ``sipline.proxying.internal``); the
B2BUA bills the account of that identity and nothing else. The From a
subscriber writes must be its own, one of the aliases it is provisioned
with (``sipline subscriber aliases``: a user part in its domain, or
user@domain, or a telephone number for a tel: From), or the anonymous URI
of RFC 3323 §4.1.1.3, which hides the caller from the callee, not from us.
"""

from __future__ import annotations

from collections.abc import Callable

from sipline.sip.message import Request
from sipline.sip.uri import SipUri, TelUri
from sipline.storage import Subscriber

ANONYMOUS_HOST = "anonymous.invalid"  # RFC 3323 §4.1.1.3: sip:anonymous@anonymous.invalid


def assert_identity(request: Request, subscriber: Subscriber) -> None:
    """The request is the authenticated ``subscriber``'s (RFC 3325 §9.1)."""
    headers = request.headers
    headers.set("P-Asserted-Identity", f"<sip:{subscriber.aor}>")
    if "p-preferred-identity" in headers:
        headers.remove("p-preferred-identity")  # RFC 3325 §9.2: used up here


def from_is_theirs(
    request: Request, subscriber: Subscriber, domain_of: Callable[[SipUri], str | None]
) -> bool:
    """The From of ``request`` names ``subscriber`` (or an alias of theirs, or nobody).

    ``domain_of`` maps a URI's host to the served domain it stands for (our
    own address stands for the first), None when it is none of ours."""
    uri = request.from_.uri
    aliases = subscriber.aliases
    if isinstance(uri, TelUri):
        return uri.number in aliases
    if not isinstance(uri, SipUri):
        return False
    user = uri.user or ""
    host = uri.host.lower()
    if host == ANONYMOUS_HOST:
        return True
    if domain_of(uri) == subscriber.domain:
        return user == subscriber.username or user in aliases or (
            f"{user}@{subscriber.domain}" in aliases
        )
    return f"{user}@{host}" in aliases

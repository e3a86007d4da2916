"""The response context of a proxied request (RFC 3261 §16.7): branches,
q-ordered groups tried in turn (the best final response: ``sipline.proxying.responses``).

``Fork`` is bookkeeping only: the router creates the branches' transactions
and carries out what the fork's answers call for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sipline.proxying.responses import best_response, for_upstream, with_challenges
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction

from .routing import Target

if TYPE_CHECKING:
    from .media import CallMedia


def q_groups(bindings: Iterable[Any]) -> list[list[Any]]:
    """Bindings (anything with ``.q``) in groups of equal q, highest q first
    (RFC 3261 §16.6: parallel within a group, the groups in sequence)."""
    groups: dict[float, list[Any]] = {}
    for binding in bindings:
        groups.setdefault(binding.q, []).append(binding)
    return [groups[q] for q in sorted(groups, reverse=True)]


class Branch:
    """One forwarded copy of the request and its client transaction."""

    __slots__ = ("fork", "target", "txn", "provisional", "done")

    def __init__(self, fork: Fork, target: Target) -> None:
        self.fork = fork
        self.target = target
        self.txn: ClientTransaction | None = None
        self.provisional = False  # a 1xx came: a CANCEL can go at once (§9.1)
        self.done = False  # a final response, or given up on (timer C, CANCEL)

    def __repr__(self) -> str:
        return f"<Branch {self.target.dest} done={self.done}>"


class Fork:
    """The response context of one proxied request.

    ``groups`` are tried one after the other; the next starts only when
    every branch of the current one has ended without a 2xx or a 6xx, the
    request was not cancelled, and ``failover`` (when given) holds the
    status that ended the group: a B2BUA pair fails over on 408 and 503
    only, while q-groups of contacts go on after any failure.
    """

    __slots__ = (
        "server",
        "request",
        "groups",
        "failover",
        "branches",
        "finals",
        "pending",
        "answered",
        "cancelled",
        "stopped",
        "key",
        "record_route",
        "media",
    )

    def __init__(
        self,
        server: ServerTransaction | None,
        request: Request,
        groups: list[list[Target]],
        failover: frozenset[int] | None = None,
    ) -> None:
        self.server = server
        # As received, with what every copy shares already changed (Route popped,
        # Max-Forwards decremented); our own responses are built from it.
        self.request = request
        self.groups = groups
        self.failover = failover
        self.branches: list[Branch] = []
        self.finals: list[Response] = []  # every non-2xx final, received or made
        self.pending = 0  # branches of the current group still running
        self.answered = False  # a final (or a 2xx) went upstream
        self.cancelled = False  # the caller sent CANCEL (§16.10)
        self.stopped = False  # a 6xx ends the search (§16.7 step 5)
        self.key = ""  # the loop key every branch carries (§16.6 step 8)
        self.record_route: str | None = (
            None  # our Record-Route parameters; None: do not record-route
        )
        self.media: CallMedia | None = None  # the request's media anchoring

    @property
    def invite(self) -> bool:
        return self.request.method == "INVITE"

    def next_group(self) -> list[Target] | None:
        """The targets to try now, or None when the search is over."""
        if not self.groups or self.cancelled or self.stopped:
            return None
        if self.finals and self.failover is not None:
            if self.finals[-1].status not in self.failover:
                return None
        return self.groups.pop(0)

    def add(self, target: Target) -> Branch:
        branch = Branch(self, target)
        self.branches.append(branch)
        self.pending += 1
        return branch

    def finish(self, branch: Branch, response: Response | None) -> None:
        """A branch ended with ``response`` (None: given up without one)."""
        if branch.done:
            return
        branch.done = True
        self.pending -= 1
        if response is not None:
            self.finals.append(response)
            if response.status >= 600 and self.invite:
                self.stopped = True

    def running(self) -> list[Branch]:
        return [b for b in self.branches if not b.done]

    def best(self) -> Response:
        """The final response for upstream once no branch is left (§16.7 step 6)."""
        if self.cancelled and self.invite:
            return self.make(487, "Request Terminated: cancelled by the caller")
        if not self.finals:
            return self.make(408, "Request Timeout: no branch answered")
        return for_upstream(with_challenges(best_response(self.finals), self.finals))

    def make(self, status: int, reason: str) -> Response:
        """A response of our own to the request as received (§16.7 step 6, §8.2.6)."""
        return self.request.response(status, reason, to_tag=new_tag())

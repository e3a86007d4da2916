"""The SIP core's two kinds of error, split as h11 splits them.

``ParseError`` is the remote kind (h11's ``RemoteProtocolError``): the peer
sent something we cannot understand, and the shell answers it 400 (or
drops a response). ``LocalProtocolError`` is the local kind: our own code
asked the core for something the protocol forbids (an ACK in a client
transaction, a branch used twice, an ACK built as a new request in a
dialog). It is a bug, never the caller's fault: nothing turns it into a
400; the node logs it and answers 500 like any other handler error.
"""


class ParseError(ValueError):
    """A message, header, URI or body that cannot be understood.

    ``reason`` is short enough to be a SIP reason phrase: the shell answers a
    request that fails to parse with ``<status> <reason>`` (400, or 505 for a
    SIP version we do not speak) or drops and counts a response, so it never
    contains CR or LF.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        reason = " ".join(reason.split())
        super().__init__(reason)
        self.reason = reason
        self.status = status


class LocalProtocolError(Exception):
    """We asked the core for what the protocol forbids: a bug in the caller."""

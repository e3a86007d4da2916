"""The one error type of the SIP core."""


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

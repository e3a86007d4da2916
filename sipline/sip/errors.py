"""The one error type of the SIP core."""


class ParseError(ValueError):
    """A message, header, URI or body that cannot be understood.

    ``reason`` is short enough to be a SIP reason phrase: the shell answers a
    request that fails to parse with ``400 <reason>`` (or drops and counts a
    response), so it never contains CR or LF.
    """

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())
        super().__init__(reason)
        self.reason = reason

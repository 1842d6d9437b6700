"""One error hierarchy for the SIP codec.

A `SipParseError` means the bytes we were given are not SIP (the peer did wrong);
a `SipBuildError` means our own caller asked for something unsendable (we did wrong).
Both are `ValueError`s so generic callers can catch either.
"""


class SipError(Exception):
    """Base of every error the SIP layer raises on purpose."""


class SipParseError(SipError, ValueError):
    """Input is not valid SIP; `.reason` says what was wrong and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SipBuildError(SipError, ValueError):
    """A message or value we were asked to build would not be valid on the wire."""

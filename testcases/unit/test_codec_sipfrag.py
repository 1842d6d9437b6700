"""message/sipfrag bodies (RFC 3420, RFC 3515 §2.4.5)."""

import pytest

from harness.sip import SipParseError, make_sipfrag, parse_sipfrag
from harness.sip.errors import SipBuildError


def test_make_and_parse() -> None:
    assert make_sipfrag(100, "Trying") == b"SIP/2.0 100 Trying\r\n"
    assert parse_sipfrag(make_sipfrag(200, "OK")) == (200, "OK")
    assert parse_sipfrag(b"SIP/2.0 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n") == (503, "Service Unavailable")
    assert parse_sipfrag(b"SIP/2.0 200 Ok\n") == (200, "Ok")


@pytest.mark.parametrize(
    "raw",
    [b"", b"SIP/2.0\r\n", b"404 Not Found\r\n", b"SIP/2.0 200 OK", b"SIP/3.0 200 OK\r\n",
     b"INVITE sip:a SIP/2.0\r\n", b"SIP/2.0 20 OK\r\n", b"SIP/2.0 200 \xff\r\n", b"\r\nSIP/2.0 200 OK\r\n"],
)
def test_strict_rejects(raw: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_sipfrag(raw)


def test_lenient_forgives_only_the_line_end() -> None:
    assert parse_sipfrag(b"SIP/2.0 200 OK", strict=False) == (200, "OK")
    with pytest.raises(SipParseError):
        parse_sipfrag(b"200 OK", strict=False)


@pytest.mark.parametrize(("status", "reason"), [(99, "x"), (700, "x"), (200, "O\r\nK")])
def test_make_refuses(status: int, reason: str) -> None:
    with pytest.raises(SipBuildError):
        make_sipfrag(status, reason)

"""message/sipfrag bodies of REFER NOTIFYs (RFC 3420, RFC 3515 §2.4.5)."""

from .errors import SipBuildError, SipParseError
from .headers import parse_status_line

__all__ = ["make_sipfrag", "parse_sipfrag"]


def make_sipfrag(status: int, reason: str) -> bytes:
    """`SIP/2.0 100 Trying\\r\\n`: RFC 3515 §2.4.5, the body "MUST begin with a SIP Status-Line"."""
    if not 100 <= status <= 699:
        raise SipBuildError(f"status {status} is not in 100..699")
    if any(ch in reason for ch in "\r\n"):
        raise SipBuildError(f"reason phrase {reason!r} contains CR or LF")
    return f"SIP/2.0 {status} {reason}\r\n".encode()


def parse_sipfrag(data: bytes, strict: bool = True) -> tuple[int, str]:
    """(status code, reason) from the Status-Line that starts a sipfrag body.

    Strict: RFC 3515 §2.4.5 "The body of a NOTIFY MUST begin with a SIP Response Status-Line";
    RFC 3420 §2 makes the start line CRLF-terminated like a message's, so "SIP/2.0" alone or a
    bare "404 Not Found" is rejected. `strict=False` only forgives a missing line end after the
    Status-Line (so a checker can tell "wrong status" from "unterminated"). Header lines after
    the Status-Line are not examined.
    """
    raw = bytes(data)
    end = raw.find(b"\n")
    if end < 0 and not strict:
        end = len(raw)
    elif end < 0:
        raise SipParseError("sipfrag has no line end after its first line")
    line = raw[:end]
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"sipfrag Status-Line is not UTF-8 (byte {exc.start})") from None
    version, code, reason = parse_status_line(text)
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"sipfrag Status-Line version {version!r} is not SIP/2.0")
    return code, reason

"""SIP codec and sans-IO core (see docs/interfaces.md).

No module in this package imports asyncio, socket, time or subprocess; a unit test enforces it.
"""

from .errors import SipBuildError, SipError, SipParseError
from .headers import (
    AbsoluteUri,
    EventHeader,
    NameAddr,
    SipUri,
    SubscriptionState,
    Via,
    format_params,
    parse_cseq,
    parse_params,
    parse_status_line,
    parse_uri,
    split_commas,
    uri_without,
)
from .ids import new_branch, new_call_id, new_tag
from .message import COMPACT_FORMS, Header, SipMessage, canonical_name
from .sdp import Connection, Media, Origin, Sdp, SdpLine, answer_direction, offer_audio
from .sipfrag import make_sipfrag, parse_sipfrag

__all__ = [
    "COMPACT_FORMS",
    "AbsoluteUri",
    "Connection",
    "EventHeader",
    "Header",
    "Media",
    "NameAddr",
    "Origin",
    "Sdp",
    "SdpLine",
    "SipBuildError",
    "SipError",
    "SipMessage",
    "SipParseError",
    "SipUri",
    "SubscriptionState",
    "Via",
    "answer_direction",
    "canonical_name",
    "format_params",
    "make_sipfrag",
    "new_branch",
    "new_call_id",
    "new_tag",
    "offer_audio",
    "parse_cseq",
    "parse_params",
    "parse_sipfrag",
    "parse_status_line",
    "parse_uri",
    "split_commas",
    "uri_without",
]

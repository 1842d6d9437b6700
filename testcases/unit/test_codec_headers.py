"""Header value parsers: URIs, name-addr, Via, CSeq, Event, Subscription-State, status line."""

import pytest

from harness.sip import (
    AbsoluteUri,
    EventHeader,
    NameAddr,
    SipParseError,
    SipUri,
    SubscriptionState,
    Via,
    parse_cseq,
    parse_params,
    parse_status_line,
    parse_uri,
    split_commas,
    uri_without,
)

# RFC 3261 §19.1.4, the lists of equivalent and of not-equivalent URIs.
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    # the other rules of §19.1.4
    ("sip:a@b", "sips:a@b"),
    ("sip:a@b;method=INVITE", "sip:a@b"),
    ("sip:a@b;user=phone", "sip:a@b"),
    ("sip:a@b;ttl=1", "sip:a@b"),
    ("sip:a@b;maddr=1.2.3.4", "sip:a@b"),
    ("sip:a@b;lr", "sip:a@b;lr=on"),
    ("sip:a@b", "sip:b"),
    ("sip:a:pw@b", "sip:a@b"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_uri_equivalent(a: str, b: str) -> None:
    assert SipUri.parse(a).equivalent(SipUri.parse(b))
    assert SipUri.parse(b).equivalent(SipUri.parse(a))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_uri_not_equivalent(a: str, b: str) -> None:
    assert not SipUri.parse(a).equivalent(SipUri.parse(b))
    assert not SipUri.parse(b).equivalent(SipUri.parse(a))


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sips:alice:secretword@atlanta.com;transport=tcp",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:alice;day=tuesday@atlanta.com",
        "sip:+358-555-1234567;phone-context=+358-555@foo.com;user=phone",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:[2001:db8::10]:5070;lr",
        "sip:127.0.0.1;lr=on;ftag=abc",
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
    ],
)
def test_uri_round_trip(text: str) -> None:
    uri = SipUri.parse(text)
    assert str(uri) == text
    rebuilt = SipUri(uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers)
    assert rebuilt.equivalent(uri)


def test_uri_fields() -> None:
    uri = SipUri.parse("sips:alice:pw@[::1]:5071;transport=tcp;lr?Replaces=a%40b")
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "pw", "[::1]", 5071)
    assert uri.params == {"transport": "tcp", "lr": None} and uri.lr and uri.transport == "tcp"
    assert uri.headers == {"Replaces": "a%40b"}
    assert uri.host_port == ("::1", 5071)
    assert SipUri.parse("sips:a@b").host_port == ("b", 5061)
    assert str(SipUri(host="10.0.0.1", user="ue1", params={"lr": None})) == "sip:ue1@10.0.0.1;lr"
    user_params = SipUri.parse("sip:+358;phone-context=x@foo.com;user=phone")
    assert user_params.user == "+358;phone-context=x" and user_params.params == {"user": "phone"}


@pytest.mark.parametrize(
    "text", ["alice@atlanta.com", "tel:+1", "sip:", "sip:a@", "sip:@b", "sip:a b@c", "sip:b:99999", "sip:b:x", "sip:b;", "sip:[zz]"]
)
def test_uri_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_uri_without_for_refer_to() -> None:
    conf = SipUri.parse("sip:conf-1@127.1.0.4")
    refer_to = NameAddr.parse("<sip:conf-1@127.1.0.4;method=INVITE?Replaces=x%40y>;isfocus")
    assert not refer_to.uri.equivalent(conf)
    assert uri_without(refer_to.uri).equivalent(conf)
    assert uri_without("sip:a@b;method=INVITE;transport=udp", headers=False).params == {"transport": "udp"}


def test_other_schemes_are_opaque() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=x")
    assert tel == AbsoluteUri("tel", "+1-201-555-0123;phone-context=x")
    assert str(tel) == "tel:+1-201-555-0123;phone-context=x"
    assert NameAddr.parse("<tel:+1>;tag=9").uri == AbsoluteUri("tel", "+1")


@pytest.mark.parametrize(
    ("text", "display", "uri", "params", "bracketed"),
    [
        ('"Alice, A" <sip:alice@a.com>;tag=1', "Alice, A", "sip:alice@a.com", {"tag": "1"}, True),
        ('"quote \\" in" <sip:a@b>', 'quote " in', "sip:a@b", {}, True),
        ("Bob Smith <sip:bob@b;transport=udp>", "Bob Smith", "sip:bob@b;transport=udp", {}, True),
        ("<sip:conf@cs;method=INVITE>;isfocus", None, "sip:conf@cs;method=INVITE", {"isfocus": None}, True),
        # RFC 3261 §20: params after a bare addr-spec are header params
        ("sip:a@b;tag=1", None, "sip:a@b", {"tag": "1"}, False),
        ("sip:a@b", None, "sip:a@b", {}, False),
        ('<sip:u@h>;+sip.instance="<urn:uuid:1>";expires=60', None, "sip:u@h", {"+sip.instance": '"<urn:uuid:1>"', "expires": "60"}, True),
    ],
)
def test_name_addr(text: str, display: str | None, uri: str, params: dict, bracketed: bool) -> None:
    value = NameAddr.parse(text)
    assert (value.display, str(value.uri), value.params, value.bracketed) == (display, uri, params, bracketed)
    assert str(value) == text
    assert value.tag == params.get("tag")


def test_name_addr_build() -> None:
    built = NameAddr(SipUri(user="ue1", host="127.1.0.1"), display='Us "1"').with_params(tag="abc")
    assert str(built) == '"Us \\"1\\"" <sip:ue1@127.1.0.1>;tag=abc'
    assert NameAddr.parse(str(built)) == built
    bare = NameAddr(SipUri.parse("sip:conf@cs;method=INVITE"), bracketed=False)
    assert str(bare) == "<sip:conf@cs;method=INVITE>"  # RFC 3261 §20: ';' forces <>


@pytest.mark.parametrize("text", ["", '"unterminated <sip:a@b>', '"x" sip:a@b', "<sip:a@b", "<sip:a@b> junk", "a@b", "Bad\"Name <sip:a@b>"])
def test_name_addr_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_via() -> None:
    via = Via.parse("SIP / 2.0 / udp [::1] : 5062 ;rport;branch=z9hG4bKc;received=10.0.0.1")
    assert via.protocol == "SIP/2.0/udp" and via.transport == "UDP"
    assert (via.host, via.port, via.branch, via.received, via.rport) == ("[::1]", 5062, "z9hG4bKc", "10.0.0.1", None)
    assert "rport" in via.params and via.sent_by == ("::1", 5062)
    assert Via.parse("SIP/2.0/TLS h;rport=7").rport == 7 and Via.parse("SIP/2.0/TLS h").sent_by == ("h", 5061)
    built = Via("SIP/2.0/UDP", "127.1.0.1", 5060, {"branch": "z9hG4bK1", "rport": None})
    assert str(built) == "SIP/2.0/UDP 127.1.0.1:5060;branch=z9hG4bK1;rport"
    assert Via.parse(str(built)) == built
    for bad in ["SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP h:x", "SIP/2.0/UDP h;;x"]:
        with pytest.raises(SipParseError):
            Via.parse(bad)


def test_cseq() -> None:
    assert parse_cseq("101 INVITE") == (101, "INVITE")
    assert parse_cseq(" 1   ACK ") == (1, "ACK")
    for bad in ["INVITE", "1", "x INVITE", "2147483648 INVITE", "1 INVITE extra"]:
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_params_and_commas() -> None:
    assert parse_params(";a=b; C = d ;e") == {"a": "b", "c": "d", "e": None}
    assert parse_params('x="a;b"') == {"x": '"a;b"'}
    assert split_commas('"a, b" <sip:x>, <sip:y;p=1,2>, c ,, ') == ['"a, b" <sip:x>', "<sip:y;p=1,2>", "c"]
    assert split_commas('"unterminated, x') == ['"unterminated, x']


def test_event_and_subscription_state() -> None:
    event = EventHeader.parse("refer;id=2")
    assert (event.package, event.id, str(event)) == ("refer", "2", "refer;id=2")
    assert EventHeader.parse("conference").id is None
    active = SubscriptionState.parse("active;expires=60")
    assert (active.state, active.expires, active.reason) == ("active", 60, None)
    term = SubscriptionState.parse("terminated;reason=noresource;retry-after=5")
    assert (term.state, term.reason, term.retry_after, term.expires) == ("terminated", "noresource", 5, None)
    broken = SubscriptionState.parse("terminated;reason=reason=noresource")  # linphonec, as captured
    assert broken.reason == "reason=noresource"
    assert SubscriptionState.parse("active;expires=soon").expires is None
    for bad in ["", ";x", "refer;;"]:
        with pytest.raises(SipParseError):
            EventHeader.parse(bad)


def test_status_line() -> None:
    assert parse_status_line("SIP/2.0 200 OK") == ("SIP/2.0", 200, "OK")
    assert parse_status_line("SIP/2.0 100 trying -- your call") == ("SIP/2.0", 100, "trying -- your call")
    assert parse_status_line("SIP/2.0 200 ") == ("SIP/2.0", 200, "")
    for bad in ["SIP/2.0", "404 Not Found", "SIP/2.0 200", "SIP/2.0 20 OK", "HTTP/1.1 200 OK"]:
        with pytest.raises(SipParseError):
            parse_status_line(bad)


def test_values_are_hashable_consistently_with_eq() -> None:
    a = SipUri.parse("sip:a@b;x=1;lr")
    b = SipUri(user="a", host="b", params={"lr": None, "x": "1"})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert len({NameAddr.parse("<sip:a@b>;tag=1"), NameAddr.parse("<sip:a@b> ;tag=1")}) == 1
    assert hash(Via.parse("SIP/2.0/UDP h;branch=z9hG4bK1")) == hash(Via("SIP/2.0/UDP", "h", None, {"branch": "z9hG4bK1"}))
    assert {EventHeader.parse("refer;id=1"), SubscriptionState.parse("active;expires=1")}

"""Real messages from other implementations (testcases/data/*.sip, cut from /work/shared/captures)."""

from pathlib import Path

import pytest

from harness.sip import EventHeader, NameAddr, SipMessage, SipUri, SubscriptionState, Via

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = sorted(DATA.glob("*.sip"))


def load(name: str) -> SipMessage:
    return SipMessage.parse((DATA / name).read_bytes())


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_parses_and_round_trips(path: Path) -> None:
    raw = path.read_bytes()
    msg = SipMessage.parse(raw)
    assert bytes(msg) == raw
    assert msg.cseq[0] > 0 and msg.call_id
    assert Via.parse(msg.get_all("Via")[0]).branch.startswith("z9hG4bK")
    assert msg.from_tag
    for name in ("From", "To", "Contact", "Route", "Record-Route", "Refer-To", "Referred-By"):
        for value in msg.get_all(name):
            assert str(NameAddr.parse(value)) == value


def test_samples_present() -> None:
    assert len(SAMPLES) >= 8


def test_linphone_malformed_final_notify() -> None:
    msg = load("linphonec-transferee-f17-notify-final-malformed.sip")
    state = SubscriptionState.parse(msg.get("Subscription-State") or "")
    assert (state.state, state.reason) == ("terminated", "reason=noresource")
    assert EventHeader.parse(msg.get("Event") or "").id is None
    assert msg.content_type == "message/sipfrag" and msg.body == b"SIP/2.0 200 Ok\r\n"


def test_baresip_notify_has_event_id() -> None:
    msg = load("baresip-transferee-f7-notify-trying.sip")
    assert EventHeader.parse(msg.get("o") or msg.get("Event") or "").id == "2"


def test_refer_fields() -> None:
    msg = load("linphonec-transferee-f6-refer.sip")
    assert msg.get_all("Refer-To") == ["<sip:conf@127.0.0.1:5090>"]
    assert NameAddr.parse(msg.get("Refer-To") or "").uri.equivalent(SipUri.parse("sip:conf@127.0.0.1:5090"))
    assert msg.to_tag == "gHKzjl0" and msg.cseq == (2, "REFER")


def test_kamailio_record_route_and_reason() -> None:
    rr = load("sipp-transferee-via-kamailio-f7-200-invite-record-route.sip").get_all("Record-Route")
    uri = NameAddr.parse(rr[0]).uri
    assert isinstance(uri, SipUri) and uri.lr and uri.params["lr"] == "on"
    assert load("sipp-transferee-via-kamailio-f2-100-trying.sip").reason == "trying -- your call is important to us"


def test_digest_challenge_not_split() -> None:
    msg = load("baresip-transferee-via-kamailio-digest-f2-401-register.sip")
    assert msg.get_all("WWW-Authenticate") == ['Digest realm="127.0.0.1", nonce="awTjoWsE4nXyq3BbnfpoRRbeN92oZ5Vs"']


CAPTURES = sorted(Path("/work/shared/captures").glob("*.pcap"))


@pytest.mark.skipif(not CAPTURES, reason="shared captures not available")
def test_every_captured_datagram_round_trips() -> None:
    from scapy.layers.inet import UDP
    from scapy.utils import rdpcap

    count = 0
    for capture in CAPTURES:
        for packet in rdpcap(str(capture)):
            raw = bytes(packet[UDP].payload)
            assert bytes(SipMessage.parse(raw)) == raw, (capture.name, count)
            count += 1
    assert count > 100

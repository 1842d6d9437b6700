"""RFC 3261 §12 dialogs: state from the dialog-creating exchange, requests built from it, checks on input."""

from __future__ import annotations

import pytest

from harness.sip.build import add_standard, add_via, make_response
from harness.sip.dialog import CONFIRMED, DIALOG, EARLY, TERMINATED, Dialog, DialogError
from harness.sip.message import SipMessage

RR = ["<sip:127.9.0.11;lr>", "<sip:127.9.0.12;lr;ftag=x>"]  # as the INVITE collected them: P then S


def invite(record_route: list[str] | None = None, cseq: int = 7) -> SipMessage:
    headers = [
        ("From", '"UE 1" <sip:ue1@127.9.0.1>;tag=ue1tag'),
        ("To", "<sip:conf@127.9.0.4>"),
        ("Call-ID", "dlg-1@127.9.0.1"),
        ("CSeq", f"{cseq} INVITE"),
        ("Contact", "<sip:ue1@127.9.0.1:5060>"),
    ]
    # At the UAS the request arrives with the proxies' Record-Route, nearest proxy on top.
    headers += [("Record-Route", rr) for rr in reversed(record_route or [])]
    msg = SipMessage.request("INVITE", "sip:conf@127.9.0.4", headers, content_length=True)
    add_via(msg, "127.9.0.1", 5060, branch="z9hG4bK-dlg")
    return add_standard(msg)


def ok(request: SipMessage, status: int = 200, contact: str = "<sip:conf@127.9.0.4:5060;transport=udp>",
       tag: str = "cstag") -> SipMessage:
    rr = [("Record-Route", v) for v in request.get_all("Record-Route")]
    return make_response(request, status, "OK" if status == 200 else "Ringing", to_tag=tag,
                         headers=[*rr, ("Contact", contact)])


def uac_pair(record_route: list[str] | None = RR) -> tuple[Dialog, Dialog, SipMessage]:
    inv = invite(record_route)
    uas = Dialog.uas(inv, "cstag", "<sip:conf@127.9.0.4:5060;transport=udp>")
    uac = Dialog.uac(inv, ok(inv))
    return uac, uas, inv


def test_uac_dialog_state_from_the_2xx() -> None:
    uac, _, inv = uac_pair()
    assert uac.id == ("dlg-1@127.9.0.1", "ue1tag", "cstag")
    assert uac.local_seq == 7 and uac.remote_seq is None
    assert uac.remote_target == "sip:conf@127.9.0.4:5060;transport=udp"
    # §12.1.2: Record-Route of the response, reversed: the UAC's first hop is P (127.9.0.11).
    assert uac.route_set == ["<sip:127.9.0.11;lr>", "<sip:127.9.0.12;lr;ftag=x>"]
    assert uac.local_uri == "sip:ue1@127.9.0.1" and uac.remote_uri == "sip:conf@127.9.0.4"
    assert uac.state == CONFIRMED and not uac.secure
    assert uac.local_contact == "<sip:ue1@127.9.0.1:5060>"


def test_uas_dialog_state_from_the_request() -> None:
    _, uas, _ = uac_pair()
    assert uas.id == ("dlg-1@127.9.0.1", "cstag", "ue1tag")
    assert uas.remote_seq == 7 and uas.local_seq is None
    assert uas.remote_target == "sip:ue1@127.9.0.1:5060"
    # §12.1.1: Record-Route of the request in order: the UAS's first hop is S (127.9.0.12).
    assert uas.route_set == ["<sip:127.9.0.12;lr;ftag=x>", "<sip:127.9.0.11;lr>"]


def test_create_request_bumps_cseq_and_routes_loosely() -> None:
    uac, _, _ = uac_pair()
    bye = uac.create_request("BYE")
    assert bye.cseq == (8, "BYE") and uac.local_seq == 8
    assert bye.uri == "sip:conf@127.9.0.4:5060;transport=udp"
    assert bye.get_all("Route") == ["<sip:127.9.0.11;lr>", "<sip:127.9.0.12;lr;ftag=x>"]
    assert bye.from_tag == "ue1tag" and bye.to_tag == "cstag"
    assert bye.from_addr.display == "UE 1"
    assert bye.call_id == "dlg-1@127.9.0.1"
    assert bye.get("Via") is None  # the sender adds it
    assert bye.get("Content-Length") == "0"
    assert uac.state == TERMINATED
    with pytest.raises(DialogError) as err:
        uac.create_request("INFO")
    assert err.value.status == 481


def test_create_request_carries_headers_and_body() -> None:
    uac, _, _ = uac_pair(None)
    refer = uac.create_request("REFER", [("Refer-To", "<sip:conf@127.9.0.4>"), ("Content-Type", "text/plain")],
                               b"hi")
    assert refer.get_all("Route") == [] and refer.cseq == (8, "REFER")
    assert refer.get("Refer-To") == "<sip:conf@127.9.0.4>"
    assert refer.body == b"hi" and refer.get("Content-Length") == "2"
    again = SipMessage.parse(bytes(refer))
    assert again.cseq == (8, "REFER")


def test_uas_side_requests_start_a_local_sequence_and_swap_tags() -> None:
    _, uas, _ = uac_pair()
    notify = uas.create_request("NOTIFY")
    assert notify.cseq == (1, "NOTIFY")
    assert uas.create_request("NOTIFY").cseq == (2, "NOTIFY")
    assert notify.from_tag == "cstag" and notify.to_tag == "ue1tag"
    assert notify.uri == "sip:ue1@127.9.0.1:5060"
    assert notify.get_all("Route") == ["<sip:127.9.0.12;lr;ftag=x>", "<sip:127.9.0.11;lr>"]


def test_strict_route_puts_first_route_in_request_uri_and_target_last() -> None:
    uac, _, _ = uac_pair(["<sip:127.9.0.11;method=INVITE>", "<sip:127.9.0.12;lr>"])  # first hop: strict router
    assert uac.route_set[0] == "<sip:127.9.0.11;method=INVITE>"
    req = uac.create_request("INFO")
    assert req.uri == "sip:127.9.0.11"  # `method` is not allowed in a Request-URI (§19.1.1 Table 1)
    assert req.get_all("Route") == ["<sip:127.9.0.12;lr>", "<sip:conf@127.9.0.4:5060;transport=udp>"]


def test_ack_reuses_the_invite_cseq_number() -> None:
    uac, _, inv = uac_pair()
    ack = uac.create_ack(inv.cseq[0])
    assert ack.cseq == (7, "ACK") and uac.local_seq == 7
    assert ack.get_all("Route") == ["<sip:127.9.0.11;lr>", "<sip:127.9.0.12;lr;ftag=x>"]
    assert ack.uri == uac.remote_target
    with pytest.raises(ValueError):
        uac.create_request("ACK")


def test_remote_cseq_lower_or_equal_is_rejected_with_500() -> None:
    uac, uas, _ = uac_pair()
    info = uac.create_request("INFO")  # CSeq 8
    uas.receive_request(info)
    assert uas.remote_seq == 8
    with pytest.raises(DialogError) as err:
        uas.receive_request(info)  # same number, not ACK/CANCEL
    assert err.value.status == 500
    stale = SipMessage.parse(bytes(info).replace(b"CSeq: 8 INFO", b"CSeq: 5 INFO"))
    with pytest.raises(DialogError) as err:
        uas.receive_request(stale)
    assert err.value.status == 500
    uas.receive_request(uac.create_ack(7))  # ACK carries the INVITE's lower number: fine
    assert uas.remote_seq == 8


def test_request_from_another_dialog_gets_481() -> None:
    _, uas, _ = uac_pair()
    other = SipMessage.parse(bytes(invite()).replace(b"tag=ue1tag", b"tag=other"))
    assert not uas.matches(other)
    with pytest.raises(DialogError) as err:
        uas.receive_request(other)
    assert err.value.status == 481


def test_reinvite_refreshes_the_remote_target_both_ways() -> None:
    uac, uas, _ = uac_pair()
    reinvite = uac.create_request("INVITE", [("Contact", "<sip:ue1@127.9.0.1:5080>")])
    uas.receive_request(reinvite)
    assert uas.remote_target == "sip:ue1@127.9.0.1:5080"
    answer = make_response(reinvite, 200, "OK", headers=[("Contact", "<sip:conf@127.9.0.4:5090>")])
    assert uac.matches(answer)
    uac.receive_response(answer)
    assert uac.remote_target == "sip:conf@127.9.0.4:5090"
    uac.receive_response(make_response(uac.create_request("INFO"), 200, "OK",
                                       headers=[("Contact", "<sip:elsewhere@127.9.0.4>")]))
    assert uac.remote_target == "sip:conf@127.9.0.4:5090"  # INFO is no target refresh


def test_early_dialog_confirmed_by_2xx_with_route_set_recomputed() -> None:
    inv = invite(RR)
    ringing = ok(inv, 180, tag="cstag")
    ringing.remove("Record-Route")
    uac = Dialog.uac(inv, ringing)
    assert uac.state == EARLY and uac.route_set == []
    uac.receive_response(ok(inv))
    assert uac.state == CONFIRMED
    assert uac.route_set == ["<sip:127.9.0.11;lr>", "<sip:127.9.0.12;lr;ftag=x>"]


def test_failure_ends_early_dialog_and_481_ends_confirmed() -> None:
    inv = invite()
    uac = Dialog.uac(inv, ok(inv, 180))
    uac.receive_response(make_response(inv, 486, "Busy Here", to_tag="cstag"))
    assert uac.state == TERMINATED
    uac, _, _ = uac_pair()
    info = uac.create_request("INFO")
    uac.receive_response(make_response(info, 481, "Call/Transaction Does Not Exist"))
    assert uac.state == TERMINATED


def test_bye_received_terminates_and_later_requests_get_481() -> None:
    uac, uas, _ = uac_pair()
    info = uac.create_request("INFO")
    uas.receive_request(uac.create_request("BYE"))
    assert uas.state == TERMINATED
    with pytest.raises(DialogError) as err:
        uas.receive_request(info)
    assert err.value.status == 481


def test_no_dialog_without_to_tag_or_from_a_final_error() -> None:
    inv = invite()
    with pytest.raises(DialogError):
        Dialog.uac(inv, make_response(inv, 180, "Ringing"))
    with pytest.raises(DialogError):
        Dialog.uac(inv, make_response(inv, 404, "Not Found", to_tag="x"))


def test_uas_confirm_walks_the_table() -> None:
    uas = Dialog.uas(invite(), "cstag", early=True)
    assert uas.state == EARLY
    uas.confirm()
    assert uas.state == CONFIRMED
    assert set(DIALOG) == {EARLY, CONFIRMED, TERMINATED}


def test_sips_request_uri_makes_the_dialog_secure() -> None:
    inv = SipMessage.parse(bytes(invite()).replace(b"INVITE sip:conf", b"INVITE sips:conf"))
    assert Dialog.uas(inv, "t").secure

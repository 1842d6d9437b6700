"""Fresh identifiers: RFC 3261 branch cookie, uniqueness, Call-ID host."""

from harness.sip import NameAddr, SipUri, Via, new_branch, new_call_id, new_tag
from harness.sip.ids import MAGIC_COOKIE


def test_ids_are_fresh_and_usable() -> None:
    branches = {new_branch() for _ in range(200)}
    assert len(branches) == 200 and all(b.startswith(MAGIC_COOKIE) for b in branches)
    assert Via.parse(f"SIP/2.0/UDP h;branch={new_branch()}").branch.startswith("z9hG4bK")
    tag = new_tag()
    assert NameAddr(SipUri(host="h")).with_params(tag=tag).tag == tag and tag != new_tag()
    call_id = new_call_id("127.1.0.1")
    assert call_id.endswith("@127.1.0.1") and call_id != new_call_id("127.1.0.1")

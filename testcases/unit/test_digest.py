"""Digest authentication: published vectors, independent hashlib computations, and the server check.

Expected values are either copied from the RFCs or computed here with hashlib straight from the
RFC formulas, never through harness.sip.digest, so a shared mistake cannot hide.
"""

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sip import SipBuildError, SipMessage, SipParseError
from harness.sip.digest import (
    Challenge,
    Credentials,
    answer,
    authorization_for,
    challenges_in,
    credentials_header,
    digest_response,
    parse_challenges,
    select_challenge,
    verify,
)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- RFC 2617 §3.5 ---------------------------------------------------------------------------

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_example_response() -> None:
    ch = Challenge.parse(RFC2617_CHALLENGE)
    assert (ch.realm, ch.qop, ch.algorithm, ch.algorithm_given) == (
        "testrealm@host.com", ("auth", "auth-int"), "MD5", False)
    creds = answer(ch, method="GET", uri="/dir/index.html", username="Mufasa",
                   password="Circle Of Life", cnonce="0a4f113b")
    # RFC 2617 §3.5: response="6629fae49393a05397450978507c4ef1"
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert (creds.qop, creds.nc, creds.cnonce, creds.opaque) == (
        "auth", 1, "0a4f113b", "5ccc069c403ebaf9f0171e9517f40e41")
    text = str(creds)
    assert "qop=auth," in text and "nc=00000001" in text and 'response="6629fae4' in text


def test_rfc2617_adapted_to_sip_register() -> None:
    """The same challenge answered for a SIP REGISTER, expected computed with hashlib."""
    ch = Challenge.parse(RFC2617_CHALLENGE)
    uri = "sip:ims.example.test"
    creds = answer(ch, method="REGISTER", uri=uri, username="ue1", password="secret", cnonce="c0ffee")
    ha1 = md5("ue1:testrealm@host.com:secret")
    ha2 = md5(f"REGISTER:{uri}")
    assert creds.response == md5(f"{ha1}:{ch.nonce}:00000001:c0ffee:auth:{ha2}")


# --- RFC 7616 §3.9.1 vectors (the ones RFC 8760 relies on) -----------------------------------

R7616 = {
    "username": "Mufasa", "realm": "http-auth@example.org", "password": "Circle of Life",
    "method": "GET", "uri": "/dir/index.html", "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


@pytest.mark.parametrize(("algorithm", "published", "h"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec", md5),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", sha256),
])
def test_rfc7616_vectors(algorithm: str, published: str, h) -> None:  # type: ignore[no-untyped-def]
    v = R7616
    ha1 = h(f"{v['username']}:{v['realm']}:{v['password']}")
    ha2 = h(f"{v['method']}:{v['uri']}")
    independent = h(f"{ha1}:{v['nonce']}:00000001:{v['cnonce']}:auth:{ha2}")
    assert independent == published
    got = digest_response(algorithm, v["username"], v["realm"], v["password"], v["method"], v["uri"],
                          v["nonce"], cnonce=v["cnonce"], nc=1, qop="auth")
    assert got == published


def test_sha256_challenge_for_sip_matches_hashlib() -> None:
    ch = Challenge.parse('Digest realm="ims.test", nonce="abc123", algorithm=SHA-256, qop="auth"')
    creds = answer(ch, method="REGISTER", uri="sip:ims.test", username="ue2", password="pw2",
                   cnonce="xyz", nc=3)
    ha1, ha2 = sha256("ue2:ims.test:pw2"), sha256("REGISTER:sip:ims.test")
    assert creds.response == sha256(f"{ha1}:abc123:00000003:xyz:auth:{ha2}")
    assert creds.algorithm == "SHA-256" and "algorithm=SHA-256" in str(creds)


@pytest.mark.parametrize(("algorithm", "h"), [("MD5-sess", md5), ("SHA-256-sess", sha256)])
def test_sess_variants(algorithm: str, h) -> None:  # type: ignore[no-untyped-def]
    ch = Challenge(realm="r", nonce="n", algorithm=algorithm, qop=("auth",))
    creds = answer(ch, method="INVITE", uri="sip:b@r", username="u", password="p", cnonce="c")
    ha1 = h(f"{h('u:r:p')}:n:c")
    assert creds.response == h(f"{ha1}:n:00000001:c:auth:{h('INVITE:sip:b@r')}")


def test_no_qop_is_rfc2069_form() -> None:
    ch = Challenge.parse('Digest realm="r", nonce="n"')
    creds = answer(ch, method="REGISTER", uri="sip:r", username="u", password="p", cnonce="ignored")
    assert creds.response == md5(f"{md5('u:r:p')}:n:{md5('REGISTER:sip:r')}")
    assert creds.cnonce is None and creds.nc is None and creds.qop is None
    assert "cnonce" not in str(creds) and "nc=" not in str(creds)


def test_auth_int_hashes_the_body() -> None:
    ch = Challenge.parse('Digest realm="r", nonce="n", qop="auth-int"')
    body = b"v=0\r\n"
    creds = answer(ch, method="INVITE", uri="sip:b@r", username="u", password="p", cnonce="c", body=body)
    ha2 = md5(f"INVITE:sip:b@r:{hashlib.md5(body).hexdigest()}")
    assert creds.response == md5(f"{md5('u:r:p')}:n:00000001:c:auth-int:{ha2}")


# --- parsing ---------------------------------------------------------------------------------


def test_challenge_fields_and_round_trip() -> None:
    text = ('Digest realm="ims.test", nonce="Zx1/ab", opaque="op", algorithm=sha-256, '
            'qop="auth", stale=TRUE, userhash=false')
    ch = Challenge.parse(text)
    assert (ch.algorithm, ch.stale, ch.opaque, ch.extra) == ("SHA-256", True, "op", {"userhash": "false"})
    again = Challenge.parse(str(ch))
    assert again == ch


def test_several_challenges_in_one_value_and_rfc8760_order() -> None:
    text = ('Digest realm="r", nonce="n1", algorithm=SHA-256, qop="auth", '
            'Digest realm="r", nonce="n2", algorithm=MD5, qop="auth"')
    found = parse_challenges(text)
    assert [(c.algorithm, c.nonce) for c in found] == [("SHA-256", "n1"), ("MD5", "n2")]
    assert select_challenge(found).algorithm == "SHA-256"  # topmost supported (RFC 8760 §2.4)
    assert select_challenge(found, algorithms=["MD5"]).nonce == "n2"
    unknown = Challenge(realm="r", nonce="n", algorithm="SHA-999")
    assert select_challenge([unknown, found[1]]).algorithm == "MD5"
    with pytest.raises(SipBuildError, match="SHA-999"):
        select_challenge([unknown])


@pytest.mark.parametrize("text", [
    'Basic realm="r"',
    'Digest nonce="n"',
    'Digest realm="r"',
    'Digest realm="r, nonce="n"',
    'realm="r", nonce="n"',
    "Digest",
    "",
])
def test_malformed_challenge_is_a_parse_error(text: str) -> None:
    with pytest.raises(SipParseError):
        Challenge.parse(text)


def test_credentials_round_trip_and_errors() -> None:
    text = ('Digest username="ue1", realm="r", nonce="n", uri="sip:r", response="abc", '
            'algorithm=MD5, cnonce="c", qop=auth, nc=0000000a, opaque="o"')
    creds = Credentials.parse(text)
    assert (creds.nc, creds.qop, creds.opaque) == (10, "auth", "o")
    assert Credentials.parse(str(creds)) == creds
    # qop quoted by some clients: tolerated.
    assert Credentials.parse(text.replace("qop=auth", 'qop="auth"')).qop == "auth"
    for bad in (text.replace("nc=0000000a", "nc=10"), text.replace('uri="sip:r", ', ""), "Basic abc"):
        with pytest.raises(SipParseError):
            Credentials.parse(bad)


# --- messages --------------------------------------------------------------------------------


def _register() -> SipMessage:
    return SipMessage.request("REGISTER", "sip:ims.test", [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"),
        ("From", "<sip:ue1@ims.test>;tag=1"), ("To", "<sip:ue1@ims.test>"),
        ("Call-ID", "c1"), ("CSeq", "1 REGISTER"),
    ], content_length=True)


@pytest.mark.parametrize(("status", "challenge_header", "answer_header"), [
    (401, "WWW-Authenticate", "Authorization"),
    (407, "Proxy-Authenticate", "Proxy-Authorization"),
])
def test_authorization_for_a_challenge(status: int, challenge_header: str, answer_header: str) -> None:
    resp = SipMessage.response(status, "Challenge", [
        (challenge_header, 'Digest realm="ims.test", nonce="n", algorithm=SHA-256, qop="auth"'),
        (challenge_header, 'Digest realm="ims.test", nonce="m", algorithm=MD5, qop="auth"'),
    ])
    assert [c.nonce for c in challenges_in(resp)] == ["n", "m"]
    name, value = authorization_for(_register(), resp, username="ue1", password="pw", cnonce="cn")
    assert name == answer_header == credentials_header(status)
    assert 'nonce="n"' in value
    assert verify(value, "REGISTER", lambda user, realm: "pw" if (user, realm) == ("ue1", "ims.test") else None)
    name, value = authorization_for(_register(), resp, username="ue1", password="pw", cnonce="cn",
                                    algorithms=["MD5"])
    assert 'nonce="m"' in value and "algorithm=MD5" in value


def test_challenges_in_needs_401_or_407_with_a_challenge() -> None:
    with pytest.raises(SipParseError, match="200"):
        challenges_in(SipMessage.response(200, "OK", []))
    with pytest.raises(SipParseError, match="WWW-Authenticate"):
        challenges_in(SipMessage.response(401, "Unauthorized", []))


# --- server side -----------------------------------------------------------------------------


def _creds(**over: str) -> str:
    ch = Challenge(realm="ims.test", nonce="nonce1", qop=("auth",), algorithm="SHA-256")
    return str(answer(ch, method="REGISTER", uri="sip:ims.test", username=over.get("user", "ue1"),
                      password=over.get("password", "pw"), cnonce="cn"))


def lookup(user: str, realm: str) -> str | None:
    return {"ue1": "pw"}.get(user) if realm == "ims.test" else None


def test_verify_accepts_only_the_right_password_method_and_nonce() -> None:
    good = _creds()
    assert verify(good, "REGISTER", lookup)
    assert verify(good, "REGISTER", lookup, nonce="nonce1")
    assert not verify(good, "REGISTER", lookup, nonce="other")
    assert not verify(_creds(password="wrong"), "REGISTER", lookup)
    assert not verify(_creds(user="nobody"), "REGISTER", lookup)
    assert not verify(good, "INVITE", lookup)
    assert not verify(good.replace('nonce="nonce1"', 'nonce="nonce2"'), "REGISTER", lookup)
    assert not verify("Digest garbage", "REGISTER", lookup)
    assert not verify(good.replace("SHA-256", "SHA-999"), "REGISTER", lookup)


def test_answer_refuses_what_it_cannot_do() -> None:
    with pytest.raises(SipBuildError):
        answer(Challenge(realm="r", nonce="n", algorithm="AKAv1-MD5"), method="REGISTER", uri="sip:r",
               username="u", password="p", cnonce="c")
    with pytest.raises(SipBuildError):
        answer(Challenge(realm="r", nonce="n", qop=("auth",)), method="REGISTER", uri="sip:r",
               username="u", password="p", cnonce="c", nc=0)


# --- robustness ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_parsers_raise_only_parse_errors(text: str) -> None:
    for parse in (Challenge.parse, Credentials.parse):
        with contextlib.suppress(SipParseError):
            parse(text)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
       st.sampled_from(["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"]))
def test_answer_always_verifies(password: str, algorithm: str) -> None:
    ch = Challenge(realm="r", nonce="n", algorithm=algorithm, qop=("auth",))
    creds = answer(ch, method="REGISTER", uri="sip:r", username="u", password=password, cnonce="c")
    assert Credentials.parse(str(creds)) == creds
    assert verify(str(creds), "REGISTER", lambda u, r: password)

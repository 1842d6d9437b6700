"""HTTP Digest for SIP (RFC 3261 §22, RFC 2617, RFC 7616 hashing, RFC 8760 algorithms), sans-IO.

Both sides in one place so the harness can answer a registrar's challenge and tests can check the
answer: `Challenge` (WWW-/Proxy-Authenticate), `Credentials` (Authorization/Proxy-Authorization),
`answer()` for the client and `verify()` for a server. Nothing here draws random numbers or reads a
clock: the caller passes the cnonce and the nonce-count, so every output is reproducible.
"""

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import SipBuildError, SipParseError
from .headers import quote, split_commas, unquote
from .message import SipMessage

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "Credentials",
    "answer",
    "authorization_for",
    "challenges_in",
    "credentials_header",
    "digest_response",
    "parse_challenges",
    "select_challenge",
    "verify",
]


def _hasher(name: str) -> Callable[[bytes], str]:
    return lambda data: hashlib.new(name, data).hexdigest()


#: RFC 8760 §2 / RFC 7616 §3.3 algorithm name -> hex digest function. "-sess" variants share the hash.
ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "MD5": _hasher("md5"),
    "MD5-sess": _hasher("md5"),
    "SHA-256": _hasher("sha256"),
    "SHA-256-sess": _hasher("sha256"),
}
try:  # SHA-512/256 needs OpenSSL >= 1.1.1 under hashlib; offer it only when it really works.
    hashlib.new("sha512_256", b"")
    ALGORITHMS["SHA-512-256"] = ALGORITHMS["SHA-512-256-sess"] = _hasher("sha512_256")
except ValueError:  # pragma: no cover - depends on the OpenSSL build
    pass

_CANONICAL_ALG = {name.lower(): name for name in ALGORITHMS}
_QOPS = ("auth", "auth-int")  # client preference: RFC 8760 §2.6 / common practice pick "auth" first
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEME_START_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+[ \t]*=.*)", re.S)
_QUOTED_CHALLENGE = ("realm", "nonce", "opaque", "domain")
_QUOTED_CREDENTIALS = ("username", "realm", "nonce", "uri", "response", "cnonce", "opaque")


def _canonical_algorithm(name: str) -> str:
    """Registry spelling for a known algorithm (tokens compared case-insensitively), else as given."""
    return _CANONICAL_ALG.get(name.lower(), name)


def _auth_params(text: str, where: str) -> dict[str, str]:
    """`a="x", b=y` -> {"a": "x", "b": "y"} (RFC 3261 §25.1 auth-param); names lower-cased, first wins."""
    params: dict[str, str] = {}
    for part in split_commas(text):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not _TOKEN_RE.fullmatch(name):
            raise SipParseError(f"{where}: {part!r} is not name=value")
        value = value.strip()
        if value.startswith('"') and (len(value) < 2 or not value.endswith('"')):
            raise SipParseError(f"{where}: unterminated quoted value in {part!r}")
        params.setdefault(name.lower(), unquote(value))
    return params


def _split_scheme(text: str, where: str) -> tuple[str, str]:
    m = _SCHEME_START_RE.fullmatch(text.strip())
    if m is None:
        raise SipParseError(f"{where}: expected 'Digest name=value, ...' in {text!r}")
    return m.group(1), m.group(2)


def _format(scheme: str, pairs: Iterable[tuple[str, str | None, bool]]) -> str:
    """`Digest a="x", b=y` from (name, value, quoted) triples, skipping None values."""
    items = [f"{name}={quote(value) if quoted else value}" for name, value, quoted in pairs if value is not None]
    return f"{scheme} " + ", ".join(items)


# --- challenge (server -> client) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """One digest challenge (RFC 3261 §20.44 WWW-Authenticate, §20.27 Proxy-Authenticate)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    #: False when the server sent no `algorithm` (RFC 2617 §3.2.1: then MD5 is meant).
    algorithm_given: bool = True
    scheme: str = "Digest"
    #: auth-params this module does not interpret (e.g. RFC 7616 `userhash`, `charset`).
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str) -> "Challenge":
        """Exactly one challenge; see `parse_challenges` for a value holding several."""
        found = parse_challenges(text)
        if len(found) != 1:
            raise SipParseError(f"expected one challenge, found {len(found)} in {text!r}")
        return found[0]

    @classmethod
    def _from_params(cls, scheme: str, params: dict[str, str], text: str) -> "Challenge":
        if scheme.lower() != "digest":
            raise SipParseError(f"auth scheme {scheme!r} is not Digest in {text!r}")
        for required in ("realm", "nonce"):
            if required not in params:
                raise SipParseError(f"digest challenge without {required} in {text!r}")
        known = {"realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain"}
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            # RFC 2617 §3.2.1: qop-options is a quoted, comma-separated list of tokens.
            qop=tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip()),
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            domain=params.get("domain"),
            algorithm_given="algorithm" in params,
            scheme=scheme,
            extra={k: v for k, v in params.items() if k not in known},
        )

    @property
    def supported(self) -> bool:
        """True when this module can answer it: a known algorithm and qop auth/auth-int or none."""
        return self.algorithm in ALGORITHMS and (not self.qop or any(q in _QOPS for q in self.qop))

    def __str__(self) -> str:
        """The header value a server sends (qop quoted as RFC 2617 requires, stale only when true)."""
        return _format(self.scheme, [
            ("realm", self.realm, True),
            ("nonce", self.nonce, True),
            ("opaque", self.opaque, True),
            ("domain", self.domain, True),
            ("algorithm", self.algorithm if self.algorithm_given else None, False),
            ("qop", ",".join(self.qop) if self.qop else None, True),
            ("stale", "true" if self.stale else None, False),
        ])


def parse_challenges(text: str) -> list[Challenge]:
    """Every challenge in one header value; a value may hold several (RFC 7235 §4.1 syntax)."""
    groups: list[tuple[str, list[str]]] = []
    for part in split_commas(text):
        m = _SCHEME_START_RE.fullmatch(part)
        if m is not None:  # "Digest realm=..." begins a new challenge
            groups.append((m.group(1), [m.group(2)]))
        elif groups:
            groups[-1][1].append(part)
        else:
            raise SipParseError(f"no auth scheme at the start of {text!r}")
    if not groups:
        raise SipParseError(f"empty challenge {text!r}")
    return [Challenge._from_params(scheme, _auth_params(", ".join(parts), "challenge"), text)
            for scheme, parts in groups]


def challenges_in(response: SipMessage) -> list[Challenge]:
    """The challenges of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate), in header order.

    RFC 8760 §2.4: the UAS lists its preferred algorithm first, so order matters."""
    if response.status == 401:
        name = "WWW-Authenticate"
    elif response.status == 407:
        name = "Proxy-Authenticate"
    else:
        raise SipParseError(f"status {response.status} carries no digest challenge (401/407 do)")
    values = response.get_all(name)
    if not values:
        raise SipParseError(f"{response.status} response without {name} (RFC 3261 §22.1/§22.3)")
    return [ch for value in values for ch in parse_challenges(value)]


def credentials_header(status: int) -> str:
    """Header that answers a challenge: Authorization for 401, Proxy-Authorization for 407."""
    if status == 401:
        return "Authorization"
    if status == 407:
        return "Proxy-Authorization"
    raise SipBuildError(f"status {status} is not a digest challenge (401/407)")


def select_challenge(challenges: Iterable[Challenge], algorithms: Iterable[str] | None = None) -> Challenge:
    """The first challenge we can answer, restricted to `algorithms` when given.

    RFC 8760 §2.4: "the UAC MUST use the topmost header field that contains a digest algorithm
    it supports"."""
    allowed = {_canonical_algorithm(a) for a in algorithms} if algorithms is not None else set(ALGORITHMS)
    listed = list(challenges)
    for ch in listed:
        if ch.supported and ch.algorithm in allowed:
            return ch
    offered = ", ".join(f"{c.algorithm}/qop={','.join(c.qop) or '-'}" for c in listed) or "none"
    raise SipBuildError(f"no challenge we can answer with {sorted(allowed)}; offered: {offered}")


# --- credentials (client -> server) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """One digest-response (RFC 3261 §20.7 Authorization, §20.28 Proxy-Authorization)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = "MD5"
    cnonce: str | None = None
    nc: int | None = None
    qop: str | None = None
    opaque: str | None = None
    scheme: str = "Digest"
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str) -> "Credentials":
        scheme, rest = _split_scheme(text, "credentials")
        if scheme.lower() != "digest":
            raise SipParseError(f"auth scheme {scheme!r} is not Digest in {text!r}")
        params = _auth_params(rest, "credentials")
        for required in ("username", "realm", "nonce", "uri", "response"):
            if required not in params:
                raise SipParseError(f"digest credentials without {required} in {text!r}")
        nc_text = params.get("nc")
        if nc_text is not None and not re.fullmatch(r"[0-9A-Fa-f]{8}", nc_text):
            raise SipParseError(f"nonce-count {nc_text!r} is not 8 hex digits (RFC 2617 §3.2.2)")
        known = {"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "nc", "qop", "opaque"}
        algorithm = params.get("algorithm")
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=_canonical_algorithm(algorithm) if algorithm is not None else None,
            cnonce=params.get("cnonce"),
            nc=int(nc_text, 16) if nc_text is not None else None,
            qop=params.get("qop"),
            opaque=params.get("opaque"),
            scheme=scheme,
            extra={k: v for k, v in params.items() if k not in known},
        )

    def __str__(self) -> str:
        # RFC 2617 §3.2.2: qop, nc and algorithm are tokens (unquoted); the rest quoted-strings.
        return _format(self.scheme, [
            ("username", self.username, True),
            ("realm", self.realm, True),
            ("nonce", self.nonce, True),
            ("uri", self.uri, True),
            ("response", self.response, True),
            ("algorithm", self.algorithm, False),
            ("cnonce", self.cnonce, True),
            ("opaque", self.opaque, True),
            ("qop", self.qop, False),
            ("nc", f"{self.nc:08x}" if self.nc is not None else None, False),
        ])


def digest_response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    cnonce: str | None = None,
    nc: int | None = None,
    qop: str | None = None,
    body: bytes = b"",
) -> str:
    """The `response` value (RFC 7616 §3.4.1, same formulas as RFC 2617 §3.2.2 with H chosen by name).

    A1 = user:realm:pass, or for "-sess" H(user:realm:pass):nonce:cnonce;
    A2 = method:uri, or for qop=auth-int method:uri:H(body);
    response = H(H(A1):nonce:nc:cnonce:qop:H(A2)), or without qop H(H(A1):nonce:H(A2)) (RFC 2069).
    """
    name = _canonical_algorithm(algorithm)
    if name not in ALGORITHMS:
        raise SipBuildError(f"digest algorithm {algorithm!r} is not supported ({', '.join(ALGORITHMS)})")
    h = ALGORITHMS[name]

    def hs(text: str) -> str:
        return h(text.encode("utf-8"))

    ha1 = hs(f"{username}:{realm}:{password}")
    if name.endswith("-sess"):
        if cnonce is None:
            raise SipBuildError(f"{name} needs a cnonce (RFC 7616 §3.4.2)")
        ha1 = hs(f"{ha1}:{nonce}:{cnonce}")
    if qop is None:
        return hs(f"{ha1}:{nonce}:{hs(f'{method}:{uri}')}")
    if qop == "auth":
        ha2 = hs(f"{method}:{uri}")
    elif qop == "auth-int":
        ha2 = hs(f"{method}:{uri}:{h(body)}")
    else:
        raise SipBuildError(f"qop {qop!r} is not supported (auth, auth-int)")
    if cnonce is None or nc is None:
        raise SipBuildError(f"qop={qop} needs cnonce and nc (RFC 2617 §3.2.2)")
    return hs(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


def answer(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> Credentials:
    """Credentials answering `challenge` for a request `method uri` (RFC 3261 §22.2, §22.3).

    qop "auth" is chosen when offered, else "auth-int"; with no qop offered, the RFC 2069 form is
    used and cnonce/nc are left out. The caller owns the cnonce (fresh per challenge) and nc (1, 2, ...
    for reuses of one nonce, RFC 2617 §3.2.2)."""
    if not challenge.supported:
        raise SipBuildError(f"cannot answer a {challenge.algorithm} challenge with qop {challenge.qop}")
    if not 1 <= nc <= 0xFFFFFFFF:
        raise SipBuildError(f"nonce-count {nc} is outside 1..ffffffff")
    qop = next((q for q in _QOPS if q in challenge.qop), None)
    use_cnonce = qop is not None or challenge.algorithm.endswith("-sess")
    response = digest_response(
        challenge.algorithm, username, challenge.realm, password, method, uri, challenge.nonce,
        cnonce=cnonce if use_cnonce else None, nc=nc if qop else None, qop=qop, body=body,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        cnonce=cnonce if use_cnonce else None,
        nc=nc if qop else None,
        qop=qop,
        opaque=challenge.opaque,
    )


def authorization_for(
    request: SipMessage,
    challenge_response: SipMessage,
    *,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    algorithms: Iterable[str] | None = None,
) -> tuple[str, str]:
    """(header name, value) to add to the retried request after a 401/407 (RFC 3261 §22.2).

    The caller builds the retry itself: same Call-ID, CSeq + 1, new Via branch (RFC 3261 §8.1.3.5)."""
    if request.method is None or request.uri is None:
        raise SipBuildError("authorization_for needs the request that was challenged")
    challenge = select_challenge(challenges_in(challenge_response), algorithms)
    creds = answer(challenge, method=request.method, uri=request.uri, username=username,
                   password=password, cnonce=cnonce, nc=nc, body=request.body)
    return credentials_header(challenge_response.status or 0), str(creds)


# --- server side -----------------------------------------------------------------------------


def verify(
    authorization_value: str,
    method: str,
    password_lookup: Callable[[str, str], str | None],
    *,
    body: bytes = b"",
    nonce: str | None = None,
) -> bool:
    """True when the credentials prove knowledge of the password `password_lookup(username, realm)`.

    `nonce`, when given, must equal the credentials' nonce (the one the server issued). Malformed
    credentials, unknown users and unsupported algorithms verify False rather than raise."""
    try:
        creds = Credentials.parse(authorization_value)
    except SipParseError:
        return False
    if nonce is not None and creds.nonce != nonce:
        return False
    password = password_lookup(creds.username, creds.realm)
    if password is None:
        return False
    try:
        expected = digest_response(
            creds.algorithm or "MD5", creds.username, creds.realm, password, method, creds.uri,
            creds.nonce, cnonce=creds.cnonce, nc=creds.nc, qop=creds.qop, body=body,
        )
    except SipBuildError:
        return False
    return expected == creds.response.lower()

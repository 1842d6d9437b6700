"""A UE's registration (RFC 3261 §10) with digest authentication (§22, RFC 8760), kept fresh.

The flow needs the UEs reachable through the IMS core before its first INVITE, so a run registers
every harness UE first and refreshes the binding in the background until the run ends. The REGISTER
goes straight to the UE's first hop (its P-CSCF, or the S-CSCF for UE-2/UE-3) with no Route: that
hop is an outbound proxy, the Request-URI names the home domain (§10.2).

A 401 or 407 is answered once per challenge with the algorithm the registrar put first among those
we support (RFC 8760 §2.4); a second challenge to the answer means the credentials are wrong, unless
it says `stale=true` (RFC 2617 §3.2.1: the nonce expired, the password was right). A refresh reuses
the nonce with nc + 1 and falls back to a full challenge when the registrar wants a new nonce.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from harness.agents.errors import FlowError
from harness.agents.ua import WAIT, SipAgent
from harness.net.udp import Addr
from harness.sip.digest import Challenge, answer, challenges_in, credentials_header, select_challenge
from harness.sip.errors import SipError
from harness.sip.headers import NameAddr
from harness.sip.ids import new_call_id, new_tag
from harness.sip.message import SipMessage

MIN_REFRESH = 0.5  # never refresh more often than this, whatever the registrar grants


def refresh_delay(granted: int) -> float:
    """When to refresh a binding granted for `granted` seconds: halfway, and at least 30 s before expiry
    for long ones, so a lost REGISTER still has time for its retransmissions (Timer F is 32 s)."""
    return max(MIN_REFRESH, min(granted / 2, granted - 32) if granted > 64 else granted / 2)


@dataclass
class Attempt:
    """One REGISTER transaction and how it ended, for logs and tests."""

    cseq: int
    status: int
    algorithm: str | None  # the digest algorithm answered with, None when sent without credentials


@dataclass(eq=False)
class Registration:
    """One UE's binding at `registrar_uri`, reached through `hop`."""

    agent: SipAgent
    aor: str
    contact: str                # the Contact header value (with <>), as the UE uses it in dialogs
    username: str
    password: str
    registrar_uri: str          # Request-URI of REGISTER: sip:<home domain>
    hop: Addr
    expires: int = 600
    wait: float = WAIT
    extra_headers: tuple[tuple[str, str], ...] = ()   # e.g. Supported: gruu, P-Preferred-Identity
    attempts: list[Attempt] = field(default_factory=list)
    granted: int | None = None
    call_id: str = ""
    _cseq: int = 0
    _tag: str = field(default_factory=new_tag)
    _challenge: Challenge | None = None
    _challenge_status: int = 401
    _nc: int = 0
    _cnonce: str = ""
    _refresher: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.call_id = self.call_id or new_call_id(self.agent.ip)  # one Call-ID for all (§10.2.4)

    @property
    def refreshes(self) -> int:
        """How many successful REGISTERs came after the first one."""
        return max(0, sum(1 for a in self.attempts if 200 <= a.status < 300) - 1)

    async def register(self, expires: int | None = None) -> SipMessage:
        """REGISTER until 2xx (answering challenges); FlowError naming the status otherwise."""
        expires = self.expires if expires is None else expires
        retried_for: str | None = None
        while True:
            response = await self._send(expires)
            status = response.status or 0
            if 200 <= status < 300:
                self.granted = self._granted(response, expires)
                return response
            if status not in (401, 407):
                raise FlowError(f"{self.agent.role}: REGISTER {self.aor} answered {status} {response.reason}",
                                status, response.reason)
            try:
                challenge = select_challenge(challenges_in(response))
            except SipError as exc:
                raise FlowError(f"{self.agent.role}: cannot answer the registrar's challenge: {exc}") from None
            if challenge.nonce == retried_for or (retried_for is not None and not challenge.stale):
                raise FlowError(f"{self.agent.role}: the registrar refused the credentials of {self.username!r} "
                                f"({status} again after answering its challenge)", status, response.reason)
            retried_for = challenge.nonce
            self._challenge, self._challenge_status = challenge, status
            self._nc, self._cnonce = 0, secrets.token_hex(8)

    def start_refresh(self) -> None:
        """Keep the binding alive in the background (a task of the agent, cancelled with it)."""
        if self._refresher is None:
            self._refresher = self.agent.spawn(self._refresh_loop(), f"refresh registration of {self.aor}")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(refresh_delay(self.granted or self.expires))
            await self.register()

    async def _send(self, expires: int) -> SipMessage:
        self._cseq += 1
        headers = [
            ("From", f"<{self.aor}>;tag={self._tag}"),
            ("To", f"<{self.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", self.contact),
            ("Expires", str(expires)),
            *self.extra_headers,
        ]
        algorithm = None
        if self._challenge is not None:
            self._nc += 1
            creds = answer(self._challenge, method="REGISTER", uri=self.registrar_uri, username=self.username,
                           password=self.password, cnonce=self._cnonce, nc=self._nc)
            headers.append((credentials_header(self._challenge_status), str(creds)))
            algorithm = self._challenge.algorithm
        request = SipMessage.request("REGISTER", self.registrar_uri, headers, content_length=True)
        response = await self.agent.request(request, self.wait, f"{self.agent.role} got no final response to "
                                                                f"REGISTER {self.aor}", to=self.hop)
        self.attempts.append(Attempt(self._cseq, response.status or 0, algorithm))
        return response

    def _granted(self, response: SipMessage, asked: int) -> int:
        """§10.2.4: our Contact's `expires` in the 2xx, else its Expires header, else what we asked."""
        mine = NameAddr.parse(self.contact).uri
        for value in response.get_all("Contact"):
            try:
                contact = NameAddr.parse(value)
            except SipError:
                continue
            if str(contact.uri).split(";")[0] == str(mine).split(";")[0] and contact.params.get("expires"):
                return int(str(contact.params["expires"]))
        header = response.get("Expires")
        return int(header) if header is not None and header.isdigit() else asked
